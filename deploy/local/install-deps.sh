#!/usr/bin/env bash
# install-deps.sh -- install the Debian packages agent-obs needs to build, run
# and test, but only those that are missing. Silent when nothing is missing.
# Add a package: append it to PACKAGES below.
set -euo pipefail

PACKAGES=(
	build-essential pkg-config
	clang libclang-rt-dev  # make fuzz: libFuzzer + ASan/UBSan runtimes (libclang_rt.fuzzer, a Recommends of clang)
	libmicrohttpd-dev libhiredis-dev libpq-dev libcjson-dev libwebsockets-dev
	libyaml-dev libcmocka-dev libcurl4-openssl-dev libssl-dev
	redis-server         # redis-server, redis-cli
	postgresql           # server binaries in /usr/lib/postgresql/<ver>/bin
	postgresql-client    # psql, pg_isready
	python3              # integration-test harness
	python3-yaml         # tests: parse compose.yaml and the Prometheus/Alertmanager configs
	prometheus           # prometheus, promtool (local stack :9090; make test checks configs/rules)
	prometheus-alertmanager  # prometheus-alertmanager, amtool (local stack :9093, alert tests)
	wrk                  # benchmarks
	nodejs               # dashboard build (streamer/web; Vite needs Node >= 20.19 with npm)
	chromium             # dashboard browser test (playwright-core drives /usr/bin/chromium)
	procps curl
	util-linux           # runuser (postgres refuses to run as root)
)

die() { printf 'install-deps: %s\n' "$*" >&2; exit 1; }

command -v dpkg-query >/dev/null 2>&1 || die "dpkg-query not found: this script supports Debian/Ubuntu only"

# One dpkg-query call for all packages (fast). Packages dpkg has never heard
# of print nothing, so "missing" = every package not listed as installed.
declare -A installed=()
while read -r name status; do
	[[ $status == "install ok installed" ]] && installed[$name]=1
done < <(dpkg-query -W -f='${Package} ${Status}\n' "${PACKAGES[@]}" 2>/dev/null || true)

missing=()
for pkg in "${PACKAGES[@]}"; do
	[[ -n ${installed[$pkg]:-} ]] || missing+=("$pkg")
done
((${#missing[@]} == 0)) && exit 0

SUDO=()
if ((EUID != 0)); then
	command -v sudo >/dev/null 2>&1 || die "missing packages (${missing[*]}) and not root, and sudo is not installed"
	SUDO=(sudo)
fi

echo "install-deps: installing ${#missing[@]} missing package(s): ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q ||
	die "apt-get update failed"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
	apt-get install -y -q --no-install-recommends "${missing[@]}" ||
	die "apt-get install failed for: ${missing[*]}"

# Debian starts (and enables) system services for prometheus and
# prometheus-alertmanager on install, listening on every interface. The stack
# runs its own loopback-only instances with data under var/, so stop and
# disable the system units we just brought in (an installation that was there
# before is left alone).
if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
	for pkg in "${missing[@]}"; do
		case $pkg in
		prometheus | prometheus-alertmanager)
			echo "install-deps: disabling the system service $pkg (deploy/local/stack.sh runs its own on 127.0.0.1)"
			"${SUDO[@]}" systemctl disable --now "$pkg" >/dev/null 2>&1 || true
			;;
		esac
	done
fi
echo "install-deps: done"
