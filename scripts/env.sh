# Sourced by scripts/run and scripts/test: makes .venv with NeoChat installed.
# On a fresh Debian machine it first installs what Python needs from apt.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
    local missing=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# venv + pip for Debian's python3; a python3 that has them already needs nothing.
python3 -c "import venv, ensurepip" 2>/dev/null || apt_install python3-venv python3-pip

make_venv() {  # make_venv EXTRAS
    [ -x .venv/bin/python ] || python3 -m venv .venv
    # The README's command: twistd finds twisted/plugins in the checkout (setup.py).
    .venv/bin/pip install -q -e ".$1"
}
