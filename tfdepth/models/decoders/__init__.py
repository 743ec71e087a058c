"""Decoders and heads: importing this package registers every decoder factory in ``DECODERS``."""
