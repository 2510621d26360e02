"""Training engine: trainer, its setup, state, data, loss, optimiser, EMA, anchors, results log."""
