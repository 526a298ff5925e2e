#!/usr/bin/env bash
# Install or upgrade dtesync as a systemd service (run as root).
#
#   [DTESYNC_ERP_GROUP=erp] packaging/linux/install.sh [BUILT_DIR]
#
# BUILT_DIR is the one-dir program built by packaging/build.sh (default: dist/dtesync at the
# repository root). What it does, idempotently (running it again is the upgrade):
#   - system user and group `dtesync` (no login, no home of its own): the group is the service
#     account's alone, since it reads the configuration; the ERP's users belong to another group,
#     DTESYNC_ERP_GROUP (default `dtesync-erp`), which the service account also joins;
#   - the program in /opt/dtesync (the previous one kept as /opt/dtesync.prev for rollback),
#     /usr/local/bin/dtesync pointing at it;
#   - /etc/dtesync/dtesync.toml from a template when there is none (never overwritten);
#     /etc/dtesync/cert and /etc/dtesync/caf (certificate, password, CAFs: they hold private
#     keys) for the service account alone, 0700, files 0600;
#   - /srv/dtesync/{inbox,outbox,archive,rejected}, owner dtesync, group the ERP's (setgid: what
#     either side creates stays in that group): the ERP writes the inbox and reads the rest;
#     other users of the machine get nothing. /var/lib/dtesync (state, 0700) and
#     /var/log/dtesync are made by systemd;
#   - the unit in /etc/systemd/system/dtesync.service, enabled; restarted if it was running.
# An older install shared the folders through the group dtesync: its members other than the
# service account are moved to the ERP's group, and the old certificate, password and CAF
# locations are made private (see docs/operations.md, "Permissions").
#
# DTESYNC_INSTALL_ROOT stages every file under another folder (tests/test_service_install.py
# runs the script that way, with stand-ins for useradd, systemctl and chown); empty otherwise.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
BUILT="${1:-$REPO/dist/dtesync}"
R="${DTESYNC_INSTALL_ROOT:-}"
ERP_GROUP="${DTESYNC_ERP_GROUP:-dtesync-erp}"
PREFIX=/opt/dtesync
CONF_DIR=/etc/dtesync
DATA=/srv/dtesync
UNIT=/etc/systemd/system/dtesync.service

[ "$(id -u)" = 0 ] || { echo "install.sh: run as root (sudo)" >&2; exit 2; }
[ -x "$BUILT/dtesync" ] || { echo "install.sh: $BUILT/dtesync not found; build it first: packaging/build.sh" >&2; exit 2; }
"$BUILT/dtesync" --version >/dev/null || { echo "install.sh: $BUILT/dtesync does not run on this machine" >&2; exit 1; }

[ "$ERP_GROUP" != dtesync ] || { echo "install.sh: DTESYNC_ERP_GROUP must not be dtesync (that group reads the configuration)" >&2; exit 2; }

# 1. The service user, and the ERP's group (which the service joins: it reads what the ERP
#    drops in the inbox, the ERP reads what it writes in the outbox).
if ! getent passwd dtesync >/dev/null; then
  useradd --system --user-group --home-dir /var/lib/dtesync --no-create-home \
          --shell /usr/sbin/nologin --comment "dtesync service" dtesync
fi
getent group "$ERP_GROUP" >/dev/null || groupadd --system "$ERP_GROUP"
usermod -a -G "$ERP_GROUP" dtesync
# Older installs shared the folders through the group dtesync: move its other members out.
members="$(getent group dtesync | cut -d: -f4)" || members=""
for user in ${members//,/ }; do
  [ "$user" = dtesync ] && continue
  usermod -a -G "$ERP_GROUP" "$user"
  gpasswd -d "$user" dtesync >/dev/null
  echo "install.sh: $user moved from group dtesync (it reads the configuration) to $ERP_GROUP; it must log in again"
done

# 2. The program: copy beside, then swap (a running service keeps its open files).
was_active=no
systemctl is-active --quiet dtesync 2>/dev/null && was_active=yes
mkdir -p "$R/opt" "$R/usr/local/bin"
rm -rf "$R$PREFIX.new"
cp -a "$BUILT" "$R$PREFIX.new"
mkdir -p "$R$PREFIX.new/docs" "$R$PREFIX.new/config"
cp -a "$REPO/docs/." "$R$PREFIX.new/docs/" 2>/dev/null || true
cp -a "$REPO/config/." "$R$PREFIX.new/config/" 2>/dev/null || true
if [ -d "$R$PREFIX" ]; then rm -rf "$R$PREFIX.prev"; mv "$R$PREFIX" "$R$PREFIX.prev"; fi
mv "$R$PREFIX.new" "$R$PREFIX"
chown -R root:root "$R$PREFIX"
ln -sfn "$PREFIX/dtesync" "$R/usr/local/bin/dtesync"

# 3. Configuration (never overwritten): root owns it, the service reads it. The certificate,
#    its password and the CAFs hold private keys: the service account alone reads them.
install -d -m 0750 -o root -g dtesync "$R$CONF_DIR"
install -d -m 0700 -o dtesync -g dtesync "$R$CONF_DIR/cert" "$R$CONF_DIR/caf"
if [ ! -e "$R$CONF_DIR/dtesync.toml" ]; then
  cat > "$R$CONF_DIR/dtesync.toml" <<'TOML'
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
path = "/etc/dtesync/cert/empresa.pfx"                 # copy the .pfx here: chmod 600, owner dtesync
password = { file = "/etc/dtesync/cert/password" }     # one line; chmod 600, owner dtesync

[folders]
inbox = "/srv/dtesync/inbox"
outbox = "/srv/dtesync/outbox"
archive = "/srv/dtesync/archive"
rejected = "/srv/dtesync/rejected"
caf = "/etc/dtesync/caf"       # the CAF files from the SII (they hold the folios' private key)
state = "/var/lib/dtesync"     # local disk only (journal and folio database)
TOML
  chmod 0640 "$R$CONF_DIR/dtesync.toml"
  chown root:dtesync "$R$CONF_DIR/dtesync.toml"
  echo "wrote $CONF_DIR/dtesync.toml: edit it (company, certificate), then run: dtesync check"
fi
# What holds a key, at today's and at older installs' places: private to the service account.
private_files() {
  for f in "$@"; do
    if [ -f "$f" ] && [ ! -L "$f" ]; then chown dtesync:dtesync "$f"; chmod 0600 "$f"; fi
  done
}
private_files "$R$CONF_DIR"/cert/* "$R$CONF_DIR"/caf/* "$R$CONF_DIR/empresa.pfx" "$R$CONF_DIR/cert.password"
if [ -d "$R$DATA/caf" ]; then  # older installs kept the CAFs in the folder shared with the ERP
  install -d -m 0700 -o dtesync -g dtesync "$R$DATA/caf"
  chmod g-s "$R$DATA/caf"  # install -m keeps a folder's setgid bit
  private_files "$R$DATA"/caf/*
fi

# 4. The folders shared with the ERP (ReadWritePaths=/srv/dtesync in the unit): the ERP's group
#    writes the inbox and reads the rest (results are 0640); other users get nothing.
install -d -m 0750 -o dtesync -g "$ERP_GROUP" "$R$DATA"
for d in inbox outbox archive rejected; do
  mode=2750; [ "$d" = inbox ] && mode=2770
  install -d -m "$mode" -o dtesync -g "$ERP_GROUP" "$R$DATA/$d"
  # An older install's files belong to the group dtesync: hand them to the ERP's group.
  chgrp -R "$ERP_GROUP" "$R$DATA/$d" || echo "install.sh: could not give $DATA/$d to group $ERP_GROUP" >&2
done

# 5. The unit.
install -d -m 0755 "$R$(dirname "$UNIT")"
install -m 0644 "$HERE/dtesync.service" "$R$UNIT"
systemctl daemon-reload
systemctl enable dtesync.service >/dev/null
if [ "$was_active" = yes ]; then
  systemctl restart dtesync.service
  echo "dtesync upgraded to $("$R$PREFIX/dtesync" --version) and restarted (previous version in $PREFIX.prev)"
else
  echo "installed $("$R$PREFIX/dtesync" --version). Next:"
  echo "  1. edit $CONF_DIR/dtesync.toml; copy the certificate and its password file to $CONF_DIR/cert/ (chmod 600, owner dtesync)"
  echo "  2. copy the CAF files to $CONF_DIR/caf/ (chmod 600, owner dtesync); add the ERP's users to $ERP_GROUP"
  echo "  3. sudo -u dtesync dtesync check"
  echo "  4. systemctl start dtesync && systemctl status dtesync"
fi
