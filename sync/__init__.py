"""dtesync: ERP file drop -> SII DTE (stamped, signed, schema-valid), durable and verifiable."""

__version__ = "0.1.0"
