#!/bin/bash
# chanq's shell completion (contrib/completion/): sourced in bash, driven
# through COMP_LINE/COMP_WORDS like readline does: subcommands, options
# (every option `chanq CMD --help` lists), queue names asked of a running
# chanqd (also after ':' and ',' and with --server typed on the line),
# and nothing, quickly and quietly, when no server answers. With zsh
# installed, the zsh function is checked too.
. "${top_srcdir:-.}/tests/clients/cli-lib.sh"
src=${top_srcdir:-.}/contrib/completion

# The completion gives the server a second to answer. A sanitizer build of
# chanq alone may take that long to start on a busy machine, so the checks
# of what the server answers allow much more; the one of a server that
# never answers uses the default.
export CHANQ_COMPLETION_TIMEOUT=30
scale=1
grep -qE 'define CHANQ_(ASAN|TSAN) 1' "${top_builddir:-.}/chanq_config.h" 2>/dev/null && scale=3

start_daemon
for q in mail mail:eu jobs-x; do
    cq declare "$q" >/dev/null || fail "declare $q"
done

# What completion asks: the names, one per line, sorted; or the whole answer.
[ "$(cq queues)" = "$(printf 'jobs-x\nmail\nmail:eu')" ] || fail "chanq queues: $(cq queues)"
case $(cq queues --json) in *'"mail:eu":{'*'"capacity":'*) ;; *) fail "chanq queues --json: $(cq queues --json)" ;; esac

# shellcheck source=/dev/null
. "$src/chanq"
complete -p chanq | grep -q -- '-F _chanq' || fail "no completion registered for chanq: $(complete -p chanq)"

# comp LINE: what completing at the end of LINE offers, sorted, one per line.
comp() {
    COMP_LINE=$1
    COMP_POINT=${#COMP_LINE}
    read -r -a COMP_WORDS <<<"$COMP_LINE"
    COMP_WORDS[0]=$CHANQ
    COMP_CWORD=${#COMP_WORDS[@]}
    [[ $COMP_LINE == *' ' ]] || COMP_CWORD=$((COMP_CWORD - 1))
    COMPREPLY=()
    _chanq 2>"$TMP/comp.err"
    [ -s "$TMP/comp.err" ] && fail "completing '$1' wrote to stderr: $(cat "$TMP/comp.err")"
    printf '%s\n' "${COMPREPLY[@]}" | sort
}

# expect LINE WORD...: completing LINE offers exactly these words.
expect() {
    local line=$1 got want
    shift
    got=$(comp "$line")
    want=$(printf '%s\n' "$@" | sort)
    [ "$got" = "$want" ] || fail "completing '$line': got [$(echo $got)], want [$(echo $want)]"
    echo "ok: '$line' -> $(echo $got)"
}

# offers LINE WORD...: completing LINE offers at least these words.
offers() {
    local line=$1 got w
    shift
    got=$(comp "$line")
    for w in "$@"; do
        printf '%s\n' "$got" | grep -qxF -- "$w" || fail "completing '$line' does not offer $w: [$(echo $got)]"
    done
}

expect "chanq su" submit
expect "chanq qu" queue queues
expect "chanq que" queue queues
expect "chanq jobs ma" mail mail:eu
expect "chanq jobs mail --state d" dead delayed
expect "chanq purge --state f" finished
expect "chanq queue " configure delete
expect "chanq queue delete ma" mail mail:eu
expect "chanq delete --f" --force
expect "chanq retry "
offers "chanq " submit fetch queues stats work loadtest
expect "chanq --se" --server --servers
expect "chanq --vers" --version
expect "chanq stats --w" --watch
offers "chanq work --" --concurrency --grace-ms --server --tls-ca
expect "chanq submit ma" mail mail:eu
# bash replaces only what follows the ':' (a word break).
expect "chanq submit mail:" eu
expect "chanq submit mail,jo" mail,jobs-x
expect "chanq fetch mail j" jobs-x
expect "chanq submit mail "
expect "chanq declare "  jobs-x mail mail:eu
expect "chanq loadtest --queue jo" jobs-x
expect "chanq ack "
offers "chanq work mail -- ech" echo
expect "chanq --tls-ca $TMP/chanqd.l" "$TMP/chanqd.log"

# The server named on the line is the one asked; a refused connection
# gives nothing, at once and without a word on stderr.
good=$CHANQ_SERVER
unset CHANQ_SERVER
expect "chanq pause --server $good ma" mail mail:eu
expect "chanq --server $good pause ma" mail mail:eu
t0=$(date +%s)
expect "chanq --server 127.0.0.1:1 pause ma"
CHANQ_SERVER=127.0.0.1:1 expect "chanq pause ma"
[ $(($(date +%s) - t0)) -le $((3 * scale)) ] || fail "completion waited for a refused connection"
# A server that takes the connection and never answers (a listening
# socket nobody accepts from): given up after CHANQ_COMPLETION_TIMEOUT.
python3 -c 'import socket, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(8)
print(s.getsockname()[1], flush=True); time.sleep(120)' >"$TMP/mute.port" &
mpid=$!
trap 'kill "$mpid" 2>/dev/null || true; cleanup' EXIT
for _ in $(seq 100); do [ -s "$TMP/mute.port" ] && break; sleep 0.05; done
mute=127.0.0.1:$(cat "$TMP/mute.port")
t0=$(date +%s)
CHANQ_COMPLETION_TIMEOUT=1 expect "chanq --server $mute pause ma"
[ $(($(date +%s) - t0)) -le $((3 * scale)) ] || fail "completion waited past its timeout for a mute server"
kill "$mpid" 2>/dev/null || true
export CHANQ_SERVER=$good

# Every command of `chanq --help` is completed, and every option of its
# --help (the common ones included).
cmds=$("$CHANQ" --help | sed -n 's/^  \([a-z][a-z]*\)  .*/\1/p' | sort)
[ "$cmds" = "$(printf '%s\n' $_chanq_commands | sort)" ] ||
    fail "chanq --help lists [$(echo $cmds)], the completion [$_chanq_commands]"
for c in $cmds; do
    # Option lines: "  --name ..." or "  -x, --name ...".
    opts=$("$CHANQ" "$c" --help | sed -n 's/^  *\(-[a-zA-Z], \)\{0,1\}\(--[a-z][a-z-]*\).*/\2/p' | sort -u)
    [ -n "$opts" ] || fail "no options found in chanq $c --help"
    # shellcheck disable=SC2086
    offers "chanq $c --" $opts
done
echo "ok: every command and every option of their --help is completed"

# zsh: the same function through zsh's completion system, in a zsh on a
# pseudo-terminal (tests/clients/zsh-complete.zsh). chanq must be found in
# PATH there, as it would be when installed.
if command -v zsh >/dev/null 2>&1; then
    zsh -n "$src/_chanq" || fail "zsh: _chanq does not parse"
    mkdir "$TMP/bin"
    ln -s "$(cd "$(dirname "$CHANQ")" && pwd)/$(basename "$CHANQ")" "$TMP/bin/chanq"
    zexpect() {
        local line=$1 got want
        shift
        got=$(PATH="$TMP/bin:$PATH" zsh "${top_srcdir:-.}/tests/clients/zsh-complete.zsh" "$src" "$line" | sort) ||
            fail "zsh: completing '$line' failed"
        want=$(printf '%s\n' "$@" | sort)
        [ "$got" = "$want" ] || fail "zsh: completing '$line': got [$(echo $got)], want [$(echo $want)]"
        echo "ok: zsh: '$line' -> $(echo $got)"
    }
    zexpect "chanq su" submit
    zexpect "chanq stats --w" --watch
    zexpect "chanq work --c" --concurrency
    zexpect "chanq submit ma" mail mail:eu
    zexpect "chanq submit mail,jo" jobs-x
    zexpect "chanq fetch mail j" jobs-x
    zexpect "chanq pause --server $CHANQ_SERVER ma" mail mail:eu
    zexpect "chanq --server 127.0.0.1:1 pause ma"
    zexpect "chanq ack "
else
    echo "skip: no zsh, _chanq not checked"
fi
echo "completion: ok"
