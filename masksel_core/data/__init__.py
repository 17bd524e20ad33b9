"""Data sets: in-memory arrays and .npz files, the built-in and synthetic sets, torchvision's files."""
