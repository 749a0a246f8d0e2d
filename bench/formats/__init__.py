"""File formats that both the dataset readers and the methods load: PLY meshes and SMPL body models.

They live outside ``bench.data`` so a method can load an object mesh or a body model without importing a
dataset reader (tests/test_architecture.py keeps that rule).
"""
