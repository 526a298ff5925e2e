"""The printed representation: PDF for the ERP and ESC/POS tickets for the cashier.

    layout.py      one layout model (SII Manual de Muestras Impresas) from the signed document
    pdf417.py      the TED as PDF417: byte compaction, error-correction level 5, SII geometry
    pdf.py         reportlab: letter/A4 sheets, 80/58 mm rolls
    escpos.py      ESC/POS bytes: pinned code page, GS ( k PDF417 or GS v 0 raster, cut, drawer
    profiles.py    printer profiles (printers/*.toml, shipped as sync/data/printers)
    connectors.py  TCP 9100, USB, serial, Windows spooler, CUPS, device/file
    stations.py    stations from the config and routing
    queue.py       durable print queue (SQLite in the state folder)
    service.py     the daemon hook, NAME.pdf, one sender thread per station

See docs/printing.md.
"""
