# Shared by the benchmark scripts (sourced, not run): timing, medians, and the disk's
# settling between builds. Each script defines `log` before sourcing this.

# Wall-clock seconds of a command; a failed command ends the benchmark (a failed build must
# not pass for a fast one).
seconds() {
    local start end
    start=$(date +%s.%N)
    "$@" || { log "failed: $*"; exit 1; }
    end=$(date +%s.%N)
    awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }'
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# After deleting what the last build left (an unpacked toolchain is about 20,000 files),
# untimed: write back what is dirty, then wait out ext4's reuse window. On ext4 without a
# journal (this machine's disk), the inode allocator skips inodes freed in the last 60 s
# (`recently_deleted` in the kernel's fs/ext4/ialloc.c, RECENTCY_MIN), and in the last
# 360 s once their inode table block is dirty again (RECENTCY_DIRTY), which makes every
# tool's unpacking right after a large deletion up to twice as slow. A fresh runner, or a
# developer's machine, has no such deletion behind it. The wait takes out the first
# window only; bench-ci-cache, whose runners are directories of its own, moves them aside
# instead of deleting them. BENCH_SETTLE_SECONDS overrides the wait (0: none, as these
# scripts measured before 2026-12-07).
settle_disk() {
    sync
    sleep "${BENCH_SETTLE_SECONDS:-61}"
}
