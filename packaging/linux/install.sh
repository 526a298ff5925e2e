#!/usr/bin/env bash
# Install or upgrade dtesync as a systemd service (run as root).
#
#   packaging/linux/install.sh [BUILT_DIR]
#
# BUILT_DIR is the one-dir program built by packaging/build.sh (default: dist/dtesync at the
# repository root). What it does, idempotently (running it again is the upgrade):
#   - system user and group `dtesync` (no login, no home of its own);
#   - the program in /opt/dtesync (the previous one kept as /opt/dtesync.prev for rollback),
#     /usr/local/bin/dtesync pointing at it;
#   - /etc/dtesync/dtesync.toml from a template when there is none (never overwritten);
#   - /srv/dtesync/{inbox,outbox,archive,rejected,caf} owned by dtesync (setgid: files the ERP's
#     group creates stay shared); /var/lib/dtesync and /var/log/dtesync are made by systemd;
#   - the unit in /etc/systemd/system/dtesync.service, enabled; restarted if it was running.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
BUILT="${1:-$REPO/dist/dtesync}"
PREFIX=/opt/dtesync
CONF_DIR=/etc/dtesync
DATA=/srv/dtesync
UNIT=/etc/systemd/system/dtesync.service

[ "$(id -u)" = 0 ] || { echo "install.sh: run as root (sudo)" >&2; exit 2; }
[ -x "$BUILT/dtesync" ] || { echo "install.sh: $BUILT/dtesync not found; build it first: packaging/build.sh" >&2; exit 2; }
"$BUILT/dtesync" --version >/dev/null || { echo "install.sh: $BUILT/dtesync does not run on this machine" >&2; exit 1; }

# 1. The service user.
if ! getent passwd dtesync >/dev/null; then
  useradd --system --user-group --home-dir /var/lib/dtesync --no-create-home \
          --shell /usr/sbin/nologin --comment "dtesync service" dtesync
fi

# 2. The program: copy beside, then swap (a running service keeps its open files).
was_active=no
systemctl is-active --quiet dtesync 2>/dev/null && was_active=yes
rm -rf "$PREFIX.new"
cp -a "$BUILT" "$PREFIX.new"
mkdir -p "$PREFIX.new/docs" "$PREFIX.new/config"
cp -a "$REPO/docs/." "$PREFIX.new/docs/" 2>/dev/null || true
cp -a "$REPO/config/." "$PREFIX.new/config/" 2>/dev/null || true
if [ -d "$PREFIX" ]; then rm -rf "$PREFIX.prev"; mv "$PREFIX" "$PREFIX.prev"; fi
mv "$PREFIX.new" "$PREFIX"
chown -R root:root "$PREFIX"
ln -sfn "$PREFIX/dtesync" /usr/local/bin/dtesync

# 3. Configuration (never overwritten): root owns it, the service reads it.
install -d -m 0750 -o root -g dtesync "$CONF_DIR"
if [ ! -e "$CONF_DIR/dtesync.toml" ]; then
  cat > "$CONF_DIR/dtesync.toml" <<'TOML'
# dtesync configuration for this machine. Every option is explained in
# /opt/dtesync/config/dtesync.example.toml. After editing: dtesync check
language = "es"
environment = "certificacion"   # "produccion" once the SII has authorized the company
timezone = "America/Santiago"

[company]
rut = "76543210-3"              # EDIT: the company's RUT
razon_social = "EDITAR"
giro = "EDITAR"
acteco = [466301]
direccion = "EDITAR"
comuna = "EDITAR"
ciudad = "EDITAR"
fch_resol = "2014-08-22"
nro_resol = 0

[certificate]
path = "/etc/dtesync/empresa.pfx"                 # copy the .pfx here (chmod 640 root:dtesync)
password = { file = "/etc/dtesync/cert.password" } # one line; chmod 600, owner dtesync

[folders]
inbox = "/srv/dtesync/inbox"
outbox = "/srv/dtesync/outbox"
archive = "/srv/dtesync/archive"
rejected = "/srv/dtesync/rejected"
caf = "/srv/dtesync/caf"
state = "/var/lib/dtesync"     # local disk only (journal and folio database)
TOML
  chmod 0640 "$CONF_DIR/dtesync.toml"
  chown root:dtesync "$CONF_DIR/dtesync.toml"
  echo "wrote $CONF_DIR/dtesync.toml: edit it (company, certificate), then run: dtesync check"
fi

# 4. The folders shared with the ERP (ReadWritePaths=/srv/dtesync in the unit).
install -d -m 2770 -o dtesync -g dtesync "$DATA"
for d in inbox outbox archive rejected caf; do install -d -m 2770 -o dtesync -g dtesync "$DATA/$d"; done

# 5. The unit.
install -m 0644 "$HERE/dtesync.service" "$UNIT"
systemctl daemon-reload
systemctl enable dtesync.service >/dev/null
if [ "$was_active" = yes ]; then
  systemctl restart dtesync.service
  echo "dtesync upgraded to $("$PREFIX/dtesync" --version) and restarted (previous version in $PREFIX.prev)"
else
  echo "installed $("$PREFIX/dtesync" --version). Next:"
  echo "  1. edit $CONF_DIR/dtesync.toml; copy the certificate and its password file to $CONF_DIR"
  echo "  2. copy the CAF files to $DATA/caf/"
  echo "  3. sudo -u dtesync dtesync check"
  echo "  4. systemctl start dtesync && systemctl status dtesync"
fi
