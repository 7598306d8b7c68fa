# Sourced first by the bridge tests: runs the test again in a network
# namespace of its own (unshare --net) with only a loopback interface, so
# that its ports collide with nothing and its traffic reaches nothing else.
# mbqd's socket is a file, reachable from any network namespace. Skips (77)
# where the namespace cannot be made (no CAP_SYS_ADMIN).
if [ -z "${MBQ_IN_NETNS:-}" ]; then
    command -v unshare >/dev/null && command -v ip >/dev/null ||
        { echo "SKIP: unshare or ip is missing"; exit 77; }
    unshare --net true 2>/dev/null ||
        { echo "SKIP: cannot create a network namespace here (unshare --net needs CAP_SYS_ADMIN)"; exit 77; }
    MBQ_IN_NETNS=1 exec unshare --net -- "$0" "$@"
fi
ip link set lo up
