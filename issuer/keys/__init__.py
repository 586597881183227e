"""Signing keys: the keystore (private keys never leave it) and their lifecycle over time."""
