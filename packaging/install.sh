#!/bin/sh
# Install the Secateur desktop bundle for this user, in ~/.local (no root needed):
#
#   ./install.sh               install, or update an earlier install
#   ./install.sh --uninstall   remove everything the install put there
#
# `make package` puts this script at the top of the bundle (dist/secateur/install.sh, and so in
# the tarball); run from packaging/ in a checkout, it installs dist/secateur. It copies:
#
#   the bundle            ~/.local/lib/secateur/
#   the launcher          ~/.local/bin/secateur -> ~/.local/lib/secateur/secateur
#   the menu entry        $XDG_DATA_HOME/applications/io.github.secateur.Secateur.desktop
#   the icons             $XDG_DATA_HOME/icons/hicolor/<size>/apps/io.github.secateur.Secateur.*
#   the model file types  $XDG_DATA_HOME/mime/packages/io.github.secateur.Secateur.xml
#   the AppStream data    $XDG_DATA_HOME/metainfo/io.github.secateur.Secateur.metainfo.xml
#
# ($XDG_DATA_HOME defaults to ~/.local/share.) The menu entry runs the launcher by its full
# path, so it works even where ~/.local/bin is not on the desktop session's PATH.
set -eu

APP_ID=io.github.secateur.Secateur
DATA=${XDG_DATA_HOME:-$HOME/.local/share}
LIB=$HOME/.local/lib/secateur
BIN=$HOME/.local/bin
LAUNCHER=$BIN/secateur
SIZES="16 24 32 48 64 128 256"

say() { printf '%s\n' "$*"; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }

# The launcher is ours when it is a symlink into $LIB; anything else (say, a `pip install
# --user secateur` script) is left alone.
launcher_is_ours() {
    [ -L "$LAUNCHER" ] && [ "$(readlink "$LAUNCHER")" = "$LIB/secateur" ]
}

refresh_caches() {
    if command -v update-mime-database >/dev/null 2>&1 && [ -d "$DATA/mime/packages" ]; then
        update-mime-database "$DATA/mime" >/dev/null 2>&1 || say "note: update-mime-database failed"
    fi
    if command -v update-desktop-database >/dev/null 2>&1 && [ -d "$DATA/applications" ]; then
        update-desktop-database -q "$DATA/applications" || say "note: update-desktop-database failed"
    fi
    # Only refresh an icon cache that already exists: a stale one would hide the new icons,
    # while without one the desktop reads the folders directly.
    if [ -f "$DATA/icons/hicolor/icon-theme.cache" ] && command -v gtk-update-icon-cache >/dev/null 2>&1; then
        gtk-update-icon-cache -q -t -f "$DATA/icons/hicolor" || say "note: gtk-update-icon-cache failed"
    fi
    if [ -d "$DATA/icons/hicolor" ]; then touch "$DATA/icons/hicolor"; fi
}

uninstall() {
    if launcher_is_ours; then rm -f "$LAUNCHER"; say "removed $LAUNCHER"
    elif [ -e "$LAUNCHER" ] || [ -L "$LAUNCHER" ]; then say "left $LAUNCHER alone: it is not this install's"
    fi
    for file in \
        "$DATA/applications/$APP_ID.desktop" \
        "$DATA/mime/packages/$APP_ID.xml" \
        "$DATA/metainfo/$APP_ID.metainfo.xml" \
        "$DATA/icons/hicolor/scalable/apps/$APP_ID.svg"; do
        if [ -e "$file" ]; then rm -f "$file"; say "removed $file"; fi
    done
    for size in $SIZES; do
        file=$DATA/icons/hicolor/${size}x${size}/apps/$APP_ID.png
        if [ -e "$file" ]; then rm -f "$file"; say "removed $file"; fi
    done
    if [ -d "$LIB" ]; then rm -rf "$LIB"; say "removed $LIB"; fi
    refresh_caches
    say "Secateur is uninstalled."
}

# The bundle: this script's own folder inside a bundle, or dist/secateur from packaging/.
find_bundle() {
    here=$(cd "$(dirname "$0")" && pwd -P)
    for candidate in "$here" "$here/../dist/secateur"; do
        if [ -x "$candidate/secateur" ] && [ -d "$candidate/_internal" ] && [ -d "$candidate/share" ]; then
            (cd "$candidate" && pwd -P)
            return
        fi
    done
    die "no Secateur bundle next to this script nor in ../dist/secateur (run 'make package' first)"
}

# An Exec= value for a path: quoted when it has a space. Characters that would need escaping
# (twice, in a desktop entry) or that sed would read are refused rather than guessed at.
exec_path() {
    case $1 in
        *[\"\`\$\\\|\&]*) die "cannot write a menu entry for a path holding one of \" \` \$ \\ | &: $1" ;;
        *" "*) printf '"%s"' "$1" ;;
        *) printf '%s' "$1" ;;
    esac
}

install() {
    bundle=$(find_bundle)
    if { [ -e "$LAUNCHER" ] || [ -L "$LAUNCHER" ]; } && ! launcher_is_ours; then
        die "$LAUNCHER exists and is not this install's (a pip install --user?); remove it first"
    fi
    if [ "$bundle" = "$LIB" ]; then die "this is the installed copy; run the bundle you unpacked"; fi
    # The bundle is copied beside the old one, then swapped in, so a failed copy leaves the
    # earlier install working.
    mkdir -p "$(dirname "$LIB")" "$BIN"
    rm -rf "$LIB.new"
    cp -R "$bundle" "$LIB.new"
    rm -rf "$LIB"
    mv "$LIB.new" "$LIB"
    ln -sfn "$LIB/secateur" "$LAUNCHER"
    say "installed the bundle in $LIB, launcher $LAUNCHER"

    share=$LIB/share
    icons=$LIB/_internal/resources/icons
    mkdir -p "$DATA/applications" "$DATA/mime/packages" "$DATA/metainfo" \
        "$DATA/icons/hicolor/scalable/apps"
    launch=$(exec_path "$LAUNCHER")
    sed -e "s|^Exec=secateur |Exec=$launch |" -e "s|^TryExec=secateur\$|TryExec=$LAUNCHER|" \
        "$share/$APP_ID.desktop" >"$DATA/applications/$APP_ID.desktop"
    cp "$share/$APP_ID.mime.xml" "$DATA/mime/packages/$APP_ID.xml"
    cp "$share/$APP_ID.metainfo.xml" "$DATA/metainfo/$APP_ID.metainfo.xml"
    cp "$icons/secateur.svg" "$DATA/icons/hicolor/scalable/apps/$APP_ID.svg"
    for size in $SIZES; do
        mkdir -p "$DATA/icons/hicolor/${size}x${size}/apps"
        cp "$icons/secateur-$size.png" "$DATA/icons/hicolor/${size}x${size}/apps/$APP_ID.png"
    done
    refresh_caches
    say "installed the menu entry, icons and model file types in $DATA"
    case ":$PATH:" in
        *":$BIN:"*) ;;
        *) say "note: $BIN is not on PATH; add it to run 'secateur' from a terminal" ;;
    esac
    say "Secateur is installed: find it in the applications menu, or run $LAUNCHER"
}

case ${1:-} in
    "") install ;;
    --uninstall) uninstall ;;
    -h | --help) sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//' ;;
    *) die "unknown argument '$1' (use no argument to install, --uninstall to remove)" ;;
esac
