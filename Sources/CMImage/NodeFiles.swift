/// The files every image gets so that a node boots it from the shared root: written into the
/// root after its essential packages (so the kernel's initramfs is made with them once) and
/// after the rest (the identity and SSH parts). See docs/operations.md, "Node images and the
/// shared root", and docs/architecture.md.
public enum NodeFiles {
    /// The kernel command line keys the boot script reads (cm-pxed writes them):
    ///   boot=clustermaker                 use this script instead of local/nfs
    ///   cm.root=SERVER:/PATH              the image revision's NFS export (read-only lower layer)
    ///   cm.shared=SERVER:/PATH            the cluster's shared directory, mounted at /shared
    ///   cm.nfs=OPTIONS                    NFS mount options (default below)
    ///   cm.root_nfs=OPTIONS               added for the root only (default below)
    ///   cm.overlay_size=SIZE              the tmpfs upper layer's size (default 50%)
    public static let defaultNFSOptions = "vers=4.1,proto=tcp,hard,timeo=10,retrans=2"
    /// The root is an image revision, which never changes once published: its attributes can
    /// be cached for an hour and need no revalidation on each open (close-to-open: an NFS
    /// round trip per file opened while a node boots). /shared keeps both.
    public static let defaultRootNFSOptions = "nocto,actimeo=3600"

    /// /etc/initramfs-tools/scripts/clustermaker: sourced by initramfs-tools' init after
    /// scripts/nfs, so configure_networking and nfs_top come from there; replaces mountroot.
    public static let initramfsScript = #"""
        # ClusterMaker's shared root (boot=clustermaker): the image revision read-only over
        # NFSv4.1, a tmpfs upper layer per node, overlayfs on top. Installed by cmctl image build.
        # shellcheck shell=sh

        cm_cmdline() {
            for x in $(cat /proc/cmdline); do
                case "$x" in
                cm.root=*) CM_ROOT="${x#cm.root=}" ;;
                cm.shared=*) CM_SHARED="${x#cm.shared=}" ;;
                cm.nfs=*) CM_NFS="${x#cm.nfs=}" ;;
                cm.root_nfs=*) CM_ROOT_NFS="${x#cm.root_nfs=}" ;;
                cm.overlay_size=*) CM_OVERLAY_SIZE="${x#cm.overlay_size=}" ;;
                esac
            done
            CM_NFS="${CM_NFS:-\#(defaultNFSOptions)}"
            CM_ROOT_NFS="${CM_ROOT_NFS-\#(defaultRootNFSOptions)}"
            CM_OVERLAY_SIZE="${CM_OVERLAY_SIZE:-50%}"
        }

        # Writes a mount unit for /shared into /run (it moves to the real root with /run), so
        # the image itself names no server.
        cm_shared_unit() {
            [ -n "$CM_SHARED" ] || return 0
            mkdir -p /run/systemd/system/remote-fs.target.wants
            cat > /run/systemd/system/shared.mount <<EOF
        [Unit]
        Description=The cluster's shared directory (ClusterMaker)
        [Mount]
        What=$CM_SHARED
        Where=/shared
        Type=nfs4
        Options=$CM_NFS
        EOF
            ln -sf ../shared.mount /run/systemd/system/remote-fs.target.wants/shared.mount
        }

        mountroot() {
            cm_cmdline
            [ -n "$CM_ROOT" ] || panic "ClusterMaker: no cm.root=SERVER:/PATH on the kernel command line"
            nfs_top
            modprobe af_packet 2>/dev/null
            modprobe nfsv4
            modprobe overlay
            wait_for_udev 10
            configure_networking
            nfs_premount
            lower=/run/clustermaker/lower
            rw=/run/clustermaker/overlay
            mkdir -p "$lower" "$rw"
            server="${CM_ROOT%%:*}"
            tries=0
            until mount -t nfs4 -o "ro,$CM_NFS${CM_ROOT_NFS:+,$CM_ROOT_NFS},addr=$server" "$CM_ROOT" "$lower"; do
                tries=$((tries + 1))
                [ "$tries" -lt 60 ] || panic "ClusterMaker: cannot mount $CM_ROOT (NFSv4.1) after 60 tries"
                echo "ClusterMaker: mounting $CM_ROOT failed, retrying"
                sleep 1
            done
            mount -t tmpfs -o "mode=0755,size=$CM_OVERLAY_SIZE" cm-overlay "$rw" || panic "ClusterMaker: no tmpfs for the overlay"
            mkdir -p "$rw/upper" "$rw/work"
            mount -t overlay -o "lowerdir=$lower,upperdir=$rw/upper,workdir=$rw/work" cm-root "${rootmnt?}" \
                || panic "ClusterMaker: overlay over $CM_ROOT failed"
            cm_shared_unit
            echo "ClusterMaker: root is $CM_ROOT (read-only) with a tmpfs overlay of $CM_OVERLAY_SIZE"
        }

        """#

    /// /etc/initramfs-tools/hooks/clustermaker: the modules the script needs.
    public static let initramfsHook = #"""
        #!/bin/sh
        # ClusterMaker: the modules boot=clustermaker needs (installed by cmctl image build).
        PREREQ=""
        prereqs() { echo "$PREREQ"; }
        case "$1" in prereqs) prereqs; exit 0 ;; esac
        . /usr/share/initramfs-tools/hook-functions
        manual_add_modules nfsv4 overlay af_packet

        """#

    /// /etc/initramfs-tools/conf.d/clustermaker: network drivers and NFS in the initramfs.
    public static let initramfsConf = """
        # ClusterMaker (cmctl image build): an initramfs for network boot.
        MODULES=netboot

        """

    /// /usr/lib/clustermaker/node-identity: the node's own SSH host key and the cluster's
    /// /etc/hosts from cm-pxed (`cm.node=URL` on the kernel command line; cm-pxed gives a
    /// private key only to the node it belongs to), kept in /run: never in the image, never in
    /// the node's overlay. Without cm-pxed's key, one is made for this boot.
    public static let identityScript = #"""
        #!/bin/sh
        # ClusterMaker: this node's identity from cm-pxed (cm-node-identity.service).
        set -u
        url=
        for x in $(cat /proc/cmdline); do
            case "$x" in cm.node=*) url="${x#cm.node=}" ;; esac
        done
        id=/run/clustermaker/identity
        mkdir -p "$id" && chmod 0700 "$id"
        key="$id/ssh_host_ed25519_key"
        if [ -n "$url" ] && [ ! -s "$key" ]; then
            if curl -sf --retry 5 --retry-connrefused --retry-delay 1 --max-time 30 -o "$key.new" "$url/ssh_host_ed25519_key" && [ -s "$key.new" ]; then
                chmod 0600 "$key.new" && mv "$key.new" "$key"
            else
                rm -f "$key.new"
                echo "no SSH host key from $url: making one for this boot"
            fi
        fi
        [ -s "$key" ] || ssh-keygen -q -t ed25519 -N "" -f "$key"
        if [ -n "$url" ] && curl -sf --retry 5 --retry-connrefused --retry-delay 1 --max-time 30 -o /run/clustermaker/hosts.new "$url/hosts"; then
            mv /run/clustermaker/hosts.new /run/clustermaker/hosts
            mountpoint -q /etc/hosts || mount --bind /run/clustermaker/hosts /etc/hosts
        fi
        exit 0

        """#

    public static let identityUnit = """
        [Unit]
        Description=This node's SSH host key and the cluster's /etc/hosts from cm-pxed (ClusterMaker)
        Before=ssh.service network-online.target
        After=local-fs.target

        [Service]
        Type=oneshot
        RemainAfterExit=yes
        ExecStart=/usr/lib/clustermaker/node-identity

        [Install]
        WantedBy=multi-user.target

        """

    /// Files written after every package: path in the root → (content, mode).
    public static let late: [(path: String, content: String, mode: Int)] = [
        ("/usr/lib/clustermaker/node-identity", identityScript, 0o755),
        ("/etc/systemd/system/cm-node-identity.service", identityUnit, 0o644),
        ("/etc/ssh/sshd_config.d/clustermaker.conf",
         "# ClusterMaker: the node's own host key, from cm-pxed at boot (never in the image).\nHostKey /run/clustermaker/identity/ssh_host_ed25519_key\n", 0o644),
    ]

    /// Files written after the essential packages: path in the root → (content, mode).
    public static let early: [(path: String, content: String, mode: Int)] = [
        ("/etc/initramfs-tools/scripts/clustermaker", initramfsScript, 0o644),
        ("/etc/initramfs-tools/hooks/clustermaker", initramfsHook, 0o755),
        ("/etc/initramfs-tools/conf.d/clustermaker", initramfsConf, 0o644),
    ]

    /// What the suite's power key may run on a node (cm-pxed's reboot; see NodePower).
    public static let rebootCommand = "/usr/bin/systemctl --no-block reboot && echo \(rebootQueuedMarker)"
    /// What `rebootCommand` prints once the reboot job is queued.
    public static let rebootQueuedMarker = "cm-reboot-queued"

    /// The power key's line in a node's /root/.ssh/authorized_keys: the forced command, no
    /// pty, no forwarding of any kind (`restrict`, OpenSSH 7.2+).
    public static func powerKeyLine(publicKey: String) -> String {
        "restrict,command=\"\(rebootCommand)\" \(publicKey.trimmingCharacters(in: .whitespacesAndNewlines))"
    }

    /// /root/.ssh/authorized_keys of an image: the master's key (any command), then the power
    /// key (the reboot only).
    public static func authorizedKeys(masterKey: String?, powerKey: String?) -> String {
        var lines: [String] = []
        if let masterKey { lines += masterKey.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }
        if let powerKey { lines.append(powerKeyLine(publicKey: powerKey)) }
        return lines.map { $0 + "\n" }.joined()
    }

    /// The last step of a build, run with the root as $1 (by mmdebstrap's customize hook, or
    /// by cmctl after `--from` and `image shell`): no identity of its own, the master's key.
    public static let finishScript = #"""
        #!/bin/sh
        # ClusterMaker: make a root a node image (cmctl image build). $1: the root; $2: the
        # authorized_keys file for root (the master's key, the power key's reboot line).
        set -eu
        r="$1"
        # Every node has its own identity: none in the image.
        rm -f "$r"/etc/ssh/ssh_host_*_key "$r"/etc/ssh/ssh_host_*_key.pub "$r/etc/hostname"
        : > "$r/etc/machine-id"
        rm -f "$r/var/lib/dbus/machine-id"
        mkdir -p "$r/shared" "$r/etc/systemd/system/multi-user.target.wants" "$r/etc/systemd/system/ssh.service.wants"
        ln -sf ../cm-node-identity.service "$r/etc/systemd/system/multi-user.target.wants/cm-node-identity.service"
        ln -sf ../cm-node-identity.service "$r/etc/systemd/system/ssh.service.wants/cm-node-identity.service"
        if [ -n "${2:-}" ]; then
            mkdir -p -m 0700 "$r/root/.ssh"
            cp "$2" "$r/root/.ssh/authorized_keys"
            chmod 0600 "$r/root/.ssh/authorized_keys"
        fi
        # The root is read-only under the overlay: no fsck, nothing to resize, no swap, no local
        # ext4 to scrub.
        printf '# ClusterMaker node: the root is an NFS export under a tmpfs overlay.\n' > "$r/etc/fstab"
        ln -sf /dev/null "$r/etc/systemd/system/e2scrub_reap.service"
        # Nodes change by image revisions, not by apt on each node.
        ln -sf /dev/null "$r/etc/systemd/system/apt-daily.timer"
        ln -sf /dev/null "$r/etc/systemd/system/apt-daily-upgrade.timer"
        # The journal in RAM: the overlay is RAM too, and this keeps it out of `cmctl node diff`.
        mkdir -p "$r/etc/systemd/journald.conf.d"
        printf '[Journal]\nStorage=volatile\n' > "$r/etc/systemd/journald.conf.d/clustermaker.conf"
        # The cluster's hosts file is bind-mounted here at boot (cm-node-identity.service).
        [ -e "$r/etc/hosts" ] || printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$r/etc/hosts"
        """#
}
