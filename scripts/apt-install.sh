# Shared by the install-*.sh scripts (sourced, not run): install one Debian package with apt-get.
#
#   source "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh"
#   apt_install <script name> <package> <what to install otherwise>
#
# Runs apt-get update and a quiet install without recommended packages, as root or through
# passwordless sudo. Without apt-get, or without root and sudo, it says what to install instead
# and returns non-zero; the caller decides whether that fails the run (make test with CI set).

apt_install() {
    local who="$1" package="$2" otherwise="$3"
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "$who: apt-get not found; $otherwise" >&2
        return 1
    fi
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo="sudo -n"
        else
            echo "$who: needs root to run apt-get; run as root or install $package" >&2
            return 1
        fi
    fi
    # env after sudo: sudo resets the environment, so the setting is passed on the command line.
    # --no-install-recommends: the tests need the program, not its recommended extras.
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$package" >/dev/null
}
