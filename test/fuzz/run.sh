#!/bin/sh
# Replays the regression inputs and then fuzzes each target for a while:
#   sh test/fuzz/run.sh BUILD_DIR SECONDS TARGET...
# (what `make fuzz` runs, after building BUILD_DIR/fuzz_TARGET). For each
# target: every file in test/fuzz/crashes/TARGET/ must pass; then the
# fuzzer runs for SECONDS on BUILD_DIR/corpus/TARGET, a working copy of
# test/fuzz/corpus/TARGET/ that keeps what it finds between runs (the
# committed seeds stay small). A crash leaves its input in
# BUILD_DIR/artifacts/TARGET/ and the log in BUILD_DIR/logs/TARGET.log.
# Prints one line per target; exits 1 if any target failed.
set -u
B=$1 SECS=$2
shift 2
HERE=$(dirname "$0")

# Longest input per target: a bit more than the longest thing the parser
# takes, so that its limits get tried too.
max_len() {
	case $1 in
	smtp_cmd) echo 1100 ;;     # command lines (RFC 5321: 512), paths of 256
	address_norm) echo 400 ;;  # SMTP_PATH_MAX 254, TRIPLET_PART_MAX 320
	dotcodec) echo 4096 ;;
	proxyproto) echo 700 ;;    # PROXYPROTO_V2_MAX 552
	dnsmsg) echo 2048 ;;
	dnsbl_site) echo 300 ;;   # DNSBL_DOMAIN_MAX 180 and a filter
	session) echo 2048 ;;     # header + three scripts; longer only slows runs
	*) echo 4096 ;;
	esac
}

failed=0
mkdir -p "$B/logs"
for t in "$@"; do
	bin=$B/fuzz_$t
	log=$B/logs/$t.log
	# 1. regressions: each input that once crashed must pass now
	crashes=$(find "$HERE/crashes/$t" -type f ! -name '.*' ! -name '*.md' 2>/dev/null | sort)
	nreg=$(printf '%s' "$crashes" | grep -c . || true)
	if [ -n "$crashes" ]; then
		# shellcheck disable=SC2086
		if ! "$bin" $crashes >"$B/logs/$t.regress.log" 2>&1; then
			echo "fuzz_$t: FAIL  a regression input crashes again (see $B/logs/$t.regress.log)"
			tail -n 30 "$B/logs/$t.regress.log"
			failed=1
			continue
		fi
	fi
	# 2. fuzzing, on a working copy of the seeds
	mkdir -p "$B/corpus/$t" "$B/artifacts/$t"
	cp "$HERE/corpus/$t/"* "$B/corpus/$t/"
	"$bin" -max_total_time="$SECS" -max_len="$(max_len "$t")" -timeout=10 \
		-print_final_stats=1 -artifact_prefix="$B/artifacts/$t/" \
		"$B/corpus/$t" >"$log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	persec=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
	last=$(grep -E '^#[0-9]+' "$log" | grep 'cov:' | tail -n 1)
	cov=$(printf '%s' "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
	ft=$(printf '%s' "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
	corp=$(printf '%s' "$last" | sed -n 's/.* corp: \([0-9]*\/[0-9a-zA-Z]*\).*/\1/p')
	if [ $rc -eq 0 ]; then
		status=ok
	else
		status=CRASH
		failed=1
	fi
	printf 'fuzz_%-13s %-5s %10s execs (%s/s) in %ss  cov %s  ft %s  corpus %s  regressions %s\n' \
		"$t" "$status" "${execs:-?}" "${persec:-?}" "$SECS" "${cov:-?}" "${ft:-?}" \
		"${corp:-?}" "$nreg"
	if [ $rc -ne 0 ]; then
		grep -E 'ERROR|invariant failed|SUMMARY|Test unit written' "$log" | head -n 10
		echo "  full log: $log"
	fi
done
exit $failed
