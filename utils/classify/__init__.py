"""Image classification: the task's parts (data, criterion, evaluator, postprocess, annotator) for the engine."""
