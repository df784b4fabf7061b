#!/usr/bin/env zsh
# Prints what zsh's completion offers at the end of a command line, one
# match per line, for tests/clients/completion.sh:
#     zsh-complete.zsh COMPLETION_DIR 'chanq sub'
# An interactive zsh in a pseudo-terminal (zpty) loads compinit with
# COMPLETION_DIR first in fpath; the line is typed and then a TAB. compadd
# is wrapped so that the matches a completion function adds are printed
# (calls that only collect matches, with -O, -A or -D, are left alone).
# The markers are typed split ("<ma""tch>") so that the terminal's echo of
# what is typed never looks like output.
emulate -L zsh
zmodload zsh/zpty || exit 1
dir=$1 line=$2
zpty z zsh -f -i
zpty -w z "PROMPT=''; RPROMPT=''; fpath=(${(q)dir} \$fpath)"
zpty -w z "autoload -U compinit; compinit -u -D; bindkey '^I' complete-word"
zpty -w z "zstyle ':completion:*' list-grouped false; zstyle ':completion:*' insert-tab false"
zpty -w z 'compadd() {
  if [[ ${@[1,(i)(-|--)]} == *-(O|A|D)\ * ]]; then builtin compadd "$@"; return; fi
  local -a __m; builtin compadd -O __m "$@"; (( $#__m )) && print -rl -- "<ma""tch>"${^__m}; return 0 }'
zpty -w z 'comppostfuncs=(__chanq_done); __chanq_done() { print -r -- "<en""d>"; exit }'
zpty -w -n z "$line"$'\t'
out=() chunk=
SECONDS=0
while (( SECONDS < 30 )); do
  if zpty -r -t z chunk; then
    chunk=${chunk%$'\r\n'}
    chunk=${chunk%$'\n'}
    [[ $chunk == *'<end>'* ]] && break
    [[ $chunk == *'<match>'* ]] && out+=(${chunk##*<match>})
  else
    sleep 0.05
  fi
done
zpty -d z
(( SECONDS < 30 )) || { print -u2 "zsh-complete: no answer for '$line'"; exit 1 }
print -rl -- ${(u)out}
