"""Sandbox: locally generated stand-ins (fake SII, test certificate, CAFs) for the demo and tests."""
