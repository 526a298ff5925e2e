"""The SII's public keys that sign CAF files (the FRMA over DA), by IDK.

Facts, not secrets: these are the public keys of the two self-signed SII certificates
distributed by the SII and republished by LibreDTE as ``resources/certificates/100.cer``
(IDK 100, maullin, certificación) and ``resources/certificates/300.cer`` (IDK 300, palena,
producción). The certificates carry an invalid X.509 version and expired in 2004, so they
cannot be used as certificates; only the RSA key matters. Re-derive with:

    openssl x509 -in 100.cer -pubkey -noout
    openssl x509 -in 300.cer -pubkey -noout
"""

from __future__ import annotations

IDK_CERTIFICACION = 100  # maullin.sii.cl
IDK_PRODUCCION = 300  # palena.sii.cl

SII_CAF_PUBLIC_KEYS_PEM: dict[int, bytes] = {
    IDK_CERTIFICACION: b"""-----BEGIN PUBLIC KEY-----
MFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAMj78A3LIaVQAKWFUixd5SinPgzhbMA6
seXqfeSyooER41L6743LfVHjSavUsQXc1PZ8+eExFQWMnwFUKRuMcVMCAwEAAQ==
-----END PUBLIC KEY-----
""",
    IDK_PRODUCCION: b"""-----BEGIN PUBLIC KEY-----
MFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAJ3uv8XuvZbfTHz1Pxv6Fdhdc+8ExnGP
jAez94Xv7nXntO9aOuB5wyZakA5F9gKJCvb7T6+iuNaTj38BHDWFszUCAwEAAQ==
-----END PUBLIC KEY-----
""",
}
