# bash completion for cowvisor, cowimg, cowio and cownbd (installed once
# per program name, as bash-completion looks them up by command).

_cowvisor()
{
    local cur prev
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD-1]}
    case $prev in
        --kernel|--initrd|--bios|--pidfile|--log|--config|--record|--replay)
            COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --restore|--chroot)
            COMPREPLY=($(compgen -d -- "$cur")); return ;;
        --runas)
            COMPREPLY=($(compgen -u -- "$cur")); return ;;
        --sandbox)
            COMPREPLY=($(compgen -W "on off" -- "$cur")); return ;;
        --kernel-decompress)
            COMPREPLY=($(compgen -W "host guest" -- "$cur")); return ;;
        --log-level)
            COMPREPLY=($(compgen -W "error warn info debug" -- "$cur")); return ;;
        --console)
            COMPREPLY=($(compgen -W "stdio file: unix: tcp:" -- "$cur")); compopt -o nospace; return ;;
        --qmp)
            COMPREPLY=($(compgen -W "unix: tcp:" -- "$cur")); compopt -o nospace; return ;;
        --device)
            COMPREPLY=($(compgen -W "virtio-rng virtio-console" -- "$cur")); return ;;
        --disk)
            COMPREPLY=($(compgen -W "file=" -- "$cur")); compopt -o nospace; return ;;
        --append|--cpus|--memory|--net|--loadvm|--name|--uuid|--replay-break|--record-snapshots)
            return ;;
    esac
    COMPREPLY=($(compgen -W "--kernel --initrd --append --kernel-decompress --bios --cpus --memory --disk
        --device --net --console --no-reboot --qmp --restore --loadvm --name --uuid --daemonize --pidfile --log
        --log-level --config --sandbox --runas --chroot --incoming --record --replay --replay-break --record-snapshots
        --help --version" -- "$cur"))
}

_cowimg()
{
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    if [[ $COMP_CWORD -eq 1 ]]; then
        COMPREPLY=($(compgen -W "amend bench check commit compare convert create dd info map measure snapshot
            rebase resize --help --version" -- "$cur"))
        return
    fi
    case $prev in
        -f|-F|-O) COMPREPLY=($(compgen -W "qcow2 raw" -- "$cur")); return ;;
        -t|-T) COMPREPLY=($(compgen -W "none writeback writethrough directsync unsafe" -- "$cur")); return ;;
        -r) COMPREPLY=($(compgen -W "leaks all" -- "$cur")); return ;;
    esac
    if [[ $cur == --output=* ]]; then
        COMPREPLY=($(compgen -W "--output=human --output=json" -- "$cur"))
        return
    fi
    COMPREPLY=($(compgen -f -- "$cur"))
}

_cowio()
{
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    case $prev in
        -f|--format) COMPREPLY=($(compgen -W "qcow2 raw" -- "$cur")); return ;;
        -t|--cache) COMPREPLY=($(compgen -W "none writeback writethrough directsync unsafe" -- "$cur")); return ;;
        -d|--discard) COMPREPLY=($(compgen -W "ignore unmap" -- "$cur")); return ;;
        -c|--cmd) return ;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "--cmd --format --image-opts --read-only --snapshot --nocache --cache --discard
            --copy-on-read --force-share --help --version" -- "$cur"))
        return
    fi
    COMPREPLY=($(compgen -f -- "$cur"))
}

_cownbd()
{
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    case $prev in
        -f|--format) COMPREPLY=($(compgen -W "qcow2 raw" -- "$cur")); return ;;
        -k|--socket|--pid-file) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --cache) COMPREPLY=($(compgen -W "none writeback writethrough directsync unsafe" -- "$cur")); return ;;
        --discard) COMPREPLY=($(compgen -W "ignore unmap" -- "$cur")); return ;;
        --detect-zeroes) COMPREPLY=($(compgen -W "off on unmap" -- "$cur")); return ;;
        -p|--port|-b|--bind|-e|--shared|-x|--export-name|-D|--description) return ;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "--port --bind --socket --shared --persistent --verbose --export-name --description
            --allocation-depth --fork --pid-file --format --read-only --snapshot --nocache --cache --discard
            --detect-zeroes --help --version" -- "$cur"))
        return
    fi
    COMPREPLY=($(compgen -f -- "$cur"))
}

complete -F _cowvisor cowvisor
complete -F _cowimg cowimg
complete -F _cowio cowio
complete -F _cownbd cownbd
