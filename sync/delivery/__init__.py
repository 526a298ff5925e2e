"""Delivery: each DTE to its receptor through the SII exchange (intercambio) by e-mail, the
receptors' answers read back from the exchange mailbox, and the virtual boleta (Res. Ex.
53/2025) e-mailed to the customer. docs/delivery.md is the administrator's guide."""
