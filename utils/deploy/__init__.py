"""Deployment: prediction loop and writers, backends, hub API, annotation, feature maps, export."""
