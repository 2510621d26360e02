"""Library code for YOLOv5-FLA: boxes, data, losses, metrics, checkpoints, plots. Nothing happens at import."""
