"""YOLOv5-FLA models: blocks (common.py), Focused Linear Attention (fla.py), the yaml-built detector (yolo.py)."""
