"""Training: frozen config, run set-up, train_one_epoch, the run loop, detection's Task, state, loss, optimiser."""
