#!/usr/bin/env bash
# Add the built app to the desktop menu of the current user (Linux, freedesktop menus).
#
#     packaging/install_desktop_entry.sh APP_FOLDER      (the folder holding xrfcore-gui)
#
# Writes ~/.local/share/applications/xrfcore.desktop (Exec pointing at APP_FOLDER/xrfcore-gui)
# and the icon into ~/.local/share/icons/hicolor/256x256/apps/. Remove those two files to undo.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
APP=$(cd "${1:?usage: install_desktop_entry.sh APP_FOLDER}" && pwd)
[ -x "$APP/xrfcore-gui" ] || { echo "no xrfcore-gui in $APP" >&2; exit 1; }
DATA=${XDG_DATA_HOME:-$HOME/.local/share}
mkdir -p "$DATA/applications" "$DATA/icons/hicolor/256x256/apps"
cp "$HERE/xrfcore.png" "$DATA/icons/hicolor/256x256/apps/xrfcore.png"
sed "s|^Exec=.*|Exec=\"$APP/xrfcore-gui\" %f|" "$HERE/xrfcore.desktop" > "$DATA/applications/xrfcore.desktop"
if command -v desktop-file-validate >/dev/null; then desktop-file-validate "$DATA/applications/xrfcore.desktop"; fi
if command -v update-desktop-database >/dev/null; then update-desktop-database -q "$DATA/applications" || true; fi
echo "installed $DATA/applications/xrfcore.desktop -> $APP/xrfcore-gui"
