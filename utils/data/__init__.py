"""Data loading: dataset yaml checks, label parsing and caching, datasets, augmentation, loaders."""
