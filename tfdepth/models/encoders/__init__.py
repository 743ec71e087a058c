"""Encoders: importing this package registers every encoder factory in ``ENCODERS``."""
