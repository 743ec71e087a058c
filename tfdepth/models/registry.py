"""Registries of encoder and decoder factories (see ``tfdepth/models/build.py`` for the contract)."""

from tfdepth.registry import Registry

ENCODERS = Registry("encoder")
DECODERS = Registry("decoder")
