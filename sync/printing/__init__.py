"""The printed representation: PDF for the ERP and ESC/POS tickets for the cashier.

    layout.py      one layout model (SII Manual de Muestras Impresas) from the signed document
    rules.py       the SII's rules in mm (quiet zone, timbre sizes and place, paper widths)
    pdf417.py      the TED as PDF417: byte compaction, error-correction level 5, SII geometry
    pdf.py         reportlab: letter/A4 sheets, 80/58 mm rolls
    escpos.py      ESC/POS bytes: pinned start (ESC @, FS ., ESC t), GS ( k or GS v 0, cut, drawer
    profiles.py    printer profiles (printers/*.toml, shipped as sync/data/printers)
    connectors.py  links to TCP 9100, serial, USB, Windows spooler, CUPS, device/file
    status.py      what a printer says (DLE EOT, GS r) and the conditions dtesync reports
    delivery.py    one attempt: status before, the job, acknowledgement and status after
    stations.py    stations from the config and routing
    queue.py       durable print queue (SQLite in the state folder)
    service.py     the daemon hook, NAME.pdf, one sender per station, health
    emulator.py    a software ESC/POS printer with faults on demand (tests, benchmarks)

See docs/printing.md.
"""
