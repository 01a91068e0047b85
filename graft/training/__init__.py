"""The training loop and what it is made of: batches on tensors, augmentation, freezing, BN."""
