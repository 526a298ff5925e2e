"""What `dtesync service` says on Linux: systemd supervises the daemon there (no code of ours
installs it; packaging/linux/install.sh and the unit do)."""

from __future__ import annotations

UNIT_PATH = "/etc/systemd/system/dtesync.service"


def explain(action: str | None) -> str:
    head = (f"'dtesync service {action}' es para Windows. " if action else "") + (
        "En Linux dtesync corre como servicio de systemd (Type=notify, watchdog, reinicio ante fallas, usuario "
        "dedicado 'dtesync'): la unidad es packaging/linux/dtesync.service.")
    steps = f"""
Instalación (como root, desde el repositorio):
  1. packaging/build.sh                      # programa autónomo en dist/dtesync (no requiere Python)
  2. packaging/linux/install.sh              # usuario dtesync, /opt/dtesync, /etc/dtesync, /srv/dtesync, {UNIT_PATH}
  3. edite /etc/dtesync/dtesync.toml; copie el certificado (.pfx) y su contraseña a /etc/dtesync/cert y los CAF a /etc/dtesync/caf (chmod 600, dueño dtesync); los usuarios del ERP van en el grupo dtesync-erp
  4. sudo -u dtesync dtesync check           # todo lo que falta, con su solución
  5. systemctl start dtesync                 # y: systemctl status dtesync; journalctl -u dtesync; /var/log/dtesync/

Operación: systemctl start|stop|restart|status dtesync; desinstalar: systemctl disable --now dtesync.
Carpetas fuera de /srv/dtesync: 'systemctl edit dtesync' y agregue ReadWritePaths=/ruta (docs/operations.md)."""
    return head + "\n" + steps
