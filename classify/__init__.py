"""The classification CLIs (train.py, val.py, predict.py), as official YOLOv5's classify/ folder."""
