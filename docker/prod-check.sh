#!/bin/sh
# Checks the production compose file (compose.prod.yml) with the real
# engine: `config` accepts it, and the host starts from prod.env with only
# the Redis address changed: a stand-in Redis (the redis image, run in the
# MX host's network namespace at 127.0.0.1:6379) takes the place of yours.
# Through the published port greygate greets, greylists a first try
# (450 4.2.0) and the triplet is in that Redis. Everything it starts goes
# at the end; the images stay (smoke.sh builds them, or this script does).
#
#   sh docker/prod-check.sh             # from anywhere; needs Docker, swaks
set -eu
cd "$(dirname "$0")/.."

export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-greygate-prodcheck}"
# a free port of the loopback, not the host's port 25
export GG_PUBLISH=127.0.0.1:
env_file=$(mktemp "${TMPDIR:-/tmp}/greygate-prod.env.XXXXXX")
export GG_ENV_FILE="$env_file"
redis=""
t0=$(date +%s)

if command -v docker-compose >/dev/null 2>&1; then
	dc() { docker-compose -f docker/compose.prod.yml "$@"; }
else
	dc() { docker compose -f docker/compose.prod.yml "$@"; }
fi
say() { echo "prod-check: [$(($(date +%s) - t0))s] $*"; }
fail() {
	echo "prod-check: FAILED: $*" >&2
	dc logs --no-color --tail=30 >&2 || true
	exit 1
}
cleanup() {
	[ -z "$redis" ] || docker rm -f -v "$redis" >/dev/null 2>&1 || true
	dc down --volumes --remove-orphans >/dev/null 2>&1 || true
	rm -f "$env_file"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

sed -e 's/^GG_REDIS_HOST=.*/GG_REDIS_HOST=127.0.0.1/' docker/prod.env >"$env_file"
dc config -q || fail "compose.prod.yml: docker-compose config refuses it"
say "config: valid"
sh docker/base-image.sh
dc build -q >/dev/null 2>&1 || dc build || fail "build failed"
docker image inspect greygate-redis:latest >/dev/null 2>&1 ||
	docker build -q -f docker/Dockerfile --target redis -t greygate-redis:latest . >/dev/null ||
	fail "building the stand-in Redis"
dc up -d || fail "the MX host did not start"
redis=$(docker run -d --network "container:$(dc ps -q mx)" greygate-redis:latest) ||
	fail "starting the stand-in Redis"

i=0
until [ "$(docker inspect -f '{{.State.Health.Status}}' "$(dc ps -q greygate)")" = healthy ]; do
	i=$((i + 1))
	[ $i -le 120 ] || fail "greygate is not healthy after 120 s"
	sleep 1
done
port=$(dc port mx 25 | sed 's/.*://')
say "mx and greygate healthy; port 25 published on 127.0.0.1:$port"

# greygate connects to Redis on its own schedule: poll until a first try
# is greylisted with the triplet stored (not let through as store-failure)
i=0
while :; do
	i=$((i + 1))
	[ $i -le 30 ] || fail "no greylisting through the published port: $out"
	out=$(swaks --server 127.0.0.1 --port "$port" --helo check.example.net --from '<>' \
		--to postmaster@example.org --quit-after RCPT --timeout 20 2>&1) || true
	keys=$(docker exec "$redis" redis-cli --scan --pattern 'gg:*' | wc -l)
	case $out in
	*'<** 450 4.2.0'*) [ "$keys" -gt 0 ] && break ;;
	esac
	sleep 1
done
say "greylisted through the published port (450 4.2.0), $keys key(s) in the stand-in Redis"
say "OK"
