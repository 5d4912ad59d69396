"""Fine-tuning and evaluation on downstream tasks: task features, heads' training, metrics, predictions."""
