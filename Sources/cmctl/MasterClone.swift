import ArgumentParser
import CMConfig
import CMReplication
import CMTypes
import CMWire
import Foundation

extension Master {
    /// `cmctl master clone HOST`: a freshly installed Debian 12 host, reachable over SSH as
    /// root, becomes this master's backup. Every stage looks at what is there first, so a
    /// clone that stopped half way is finished by running it again.
    struct Clone: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make a freshly installed Debian 12 host (SSH as root) this master's backup.",
            discussion: """
                Stages: reach (SSH, Debian 12, not an active master), packages (this master's apt sources; ClusterMaker's \
                packages, and with --packages all this master's manually installed ones), files (binaries, units, man pages), \
                configuration (/etc/clustermaker with the host's own name and address from cluster.toml's [[master]] list), \
                identity (hostname, machine-id, SSH host keys, GlusterFS UUID: fresh where they equal this master's), \
                GlusterFS (pool, brick, replica 2, heal), standby (clustermaker.target enabled and started). Run it again to \
                finish a clone that stopped.
                """)

        @Argument(help: "The new master: its name or address in cluster.toml's [[master]] list.") var host: String
        @Option(help: ArgumentHelp("This master's configuration.", valueName: "dir")) var configDir = "/etc/clustermaker"
        @Option(help: ArgumentHelp("Private key that logs in as root there (default: CONFIG_DIR/ssh/id_ed25519).", valueName: "file")) var sshKey: String?
        @Option(help: "SSH port.") var sshPort = 22
        @Option(help: ArgumentHelp("suite: ClusterMaker's packages only; all: also every package installed by hand here (apt-mark showmanual).", valueName: "suite|all"))
        var packages = "all"
        @Option(help: ArgumentHelp("Where this master's ClusterMaker files are installed (a staged install: scripts/setup --prefix).", valueName: "dir"))
        var sourceRoot = "/"
        @Option(help: ArgumentHelp("How long the GlusterFS heal may take.", valueName: "seconds")) var healTimeout = 1800
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await reportingErrors {
                guard ["suite", "all"].contains(packages) else { throw CLIError.failed("--packages: \"\(packages)\" is neither suite nor all") }
                guard getuid() == 0 else { throw CLIError.failed("cmctl master clone runs as root: it reads this master's keys and drives glusterd") }
                var clone = try Cloner(host: host, configDir: configDir, key: sshKey ?? "\(configDir)/ssh/id_ed25519", port: sshPort,
                                       allPackages: packages == "all", sourceRoot: sourceRoot, healTimeout: healTimeout, runtimeDir: global.runtimeDir)
                try await clone.run()
            }
        }
    }
}

/// The clone's stages, in order; each one checks before it changes anything.
struct Cloner {
    static let stages = ["reach", "packages", "files", "configuration", "identity", "GlusterFS", "standby"]
    /// What a master runs: the daemons' libraries and the engines they drive.
    static let suitePackages = ["libsystemd0", "libcurl4", "libsqlite3-0", "libpam0g", "glusterfs-server", "nfs-ganesha", "nfs-ganesha-gluster", "rpcbind",
                                "openssh-server", "openssh-client", "mmdebstrap", "ipxe", "iproute2", "procps", "libjs-chart.js", "openssl", "ipmitool", "rsync", "btrfs-progs"]

    let source: HostConfig.Host
    let target: HostConfig.Host
    let configDir: String
    let shell: RemoteShell
    let allPackages: Bool
    let sourceRoot: String
    let healTimeout: Int
    let runtimeDir: String
    let replicad: ReplicadConfig
    let started = Date()
    var stage = 0

    init(host: String, configDir: String, key: String, port: Int, allPackages: Bool, sourceRoot: String, healTimeout: Int, runtimeDir: String) throws {
        let cluster: ClusterConfig
        do { cluster = try ClusterConfig.load(configDir: configDir) } catch { throw CLIError.failed("\(error)") }
        let replicad: ReplicadConfig
        do { replicad = try ReplicadConfig.load(configDir: configDir) } catch { throw CLIError.failed("\(error)") }
        self.replicad = replicad
        let mine = replicad.volume.address
        guard let me = cluster.masters.first(where: { $0.address == mine }) else {
            throw CLIError.failed("this master (replicad.toml's address \(mine)) is not in cluster.toml's [[master]] list")
        }
        guard let other = cluster.masters.first(where: { $0.name == host || $0.address.description == host }) else {
            throw CLIError.failed("\(host) is not in cluster.toml's [[master]] list: add it (name and address) first, here")
        }
        guard other.name != me.name else { throw CLIError.failed("\(host) is this master (\(me.name))") }
        source = HostConfig.Host(name: me.name, address: me.address)
        target = HostConfig.Host(name: other.name, address: other.address)
        self.configDir = configDir
        shell = RemoteShell(address: other.address.description, key: key, port: port)
        self.allPackages = allPackages
        self.sourceRoot = sourceRoot
        self.healTimeout = healTimeout
        self.runtimeDir = runtimeDir
    }

    mutating func say(_ text: String) {
        // Unbuffered: progress shows as it happens, also through a pipe.
        FileHandle.standardOutput.write(Data("[\(stage)/\(Self.stages.count)] \(Self.stages[stage - 1]): \(text) (\(Format.duration(Date().timeIntervalSince(started))))\n".utf8))
    }

    mutating func next(_ text: String) {
        stage += 1
        say(text)
    }

    mutating func run() async throws {
        try reach()
        try installPackages()
        try copyFiles()
        try copyConfiguration()
        try freshIdentity()
        try await joinVolume()
        try await startStandby()
        print("\(target.name) (\(target.address)) is this master's backup; see cmctl master status")
    }

    // MARK: Stages

    mutating func reach() throws {
        next("\(target.name) at \(target.address) over SSH")
        let r = try shell.run("sh -c '. /etc/os-release 2>/dev/null; echo \"$ID $VERSION_ID\"'")
        guard r.status == 0 else {
            throw CLIError.failed("cannot reach root@\(target.address) over SSH: \(r.errors.isEmpty ? "exit status \(r.status)" : r.errors) (nothing was changed)")
        }
        let os = r.text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard os == "debian 12" else {
            throw CLIError.failed("\(target.address) runs \(os.isEmpty ? "an unknown system (no /etc/os-release)" : os), not Debian 12: clone onto a fresh Debian 12 (nothing was changed)")
        }
        let role = try shell.run("if command -v cmctl >/dev/null && [ -S \(runtimeDir)/vipd.sock ]; then cmctl vip status --json --runtime-dir \(runtimeDir); fi")
        if let status = Self.role(role.text), status.role == "active" {
            throw CLIError.failed("\(target.address) runs an active master (cm-vipd: active, epoch \(status.epoch)): refusing to clone over it (nothing was changed)")
        }
        say("Debian 12, not an active master")
    }

    mutating func installPackages() throws {
        next("apt sources and packages")
        // The same apt sources: this master's files, as they are.
        let sources = ["etc/apt/sources.list", "etc/apt/sources.list.d"].filter { FileManager.default.fileExists(atPath: "/\($0)") }
        if !sources.isEmpty {
            try shell.check("tar -C / -xf -", input: try Self.tar(root: "/", paths: sources), what: "copying the apt sources")
        }
        var wanted = Self.suitePackages
        if allPackages {
            let manual = try Self.local("/usr/bin/apt-mark", ["showmanual"]).split(separator: "\n").map(String.init)
            wanted += manual.filter { !$0.isEmpty && !wanted.contains($0) }
        }
        let query = try shell.run("dpkg-query -W -f='${Package} ${db:Status-Abbrev}\\n' \(wanted.joined(separator: " ")) 2>/dev/null")
        let installed = Set(query.text.split(separator: "\n").compactMap { line -> String? in
            let parts = line.split(separator: " ")
            return parts.count >= 2 && parts[1].hasPrefix("ii") ? String(parts[0]) : nil
        })
        var missing = wanted.filter { !installed.contains($0) }
        guard !missing.isEmpty else { return say("all \(wanted.count) packages are there") }
        say("\(installed.count) of \(wanted.count) packages are there; installing \(missing.count)")
        try shell.check("apt-get -o DPkg::Lock::Timeout=600 update -qq", what: "apt-get update")
        if allPackages {
            // Packages of this master that the new one's sources do not have are said, not fatal.
            let available = try shell.check("apt-cache policy \(missing.joined(separator: " ")) 2>/dev/null | awk '/^[^ ]/{p=$1} /Candidate:/{if($2!=\"(none)\") print p}' | tr -d ':'")
            let have = Set(available.split(separator: "\n").map(String.init))
            let gone = missing.filter { !have.contains($0) && !Self.suitePackages.contains($0) }
            if !gone.isEmpty { say("not in \(target.name)'s apt sources, skipped: \(gone.joined(separator: " "))") }
            missing = missing.filter { !gone.contains($0) }
        }
        try shell.check("DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \(missing.joined(separator: " "))",
                        what: "apt-get install")
        say("installed \(missing.count) packages")
    }

    mutating func copyFiles() throws {
        next("binaries, units and man pages")
        let root = sourceRoot == "/" ? "" : sourceRoot
        var paths: [String] = []
        let fm = FileManager.default
        for (dir, match) in [("usr/sbin", { (n: String) in n.hasPrefix("cm-") }), ("usr/bin", { $0 == "cmctl" }),
                             ("usr/lib/systemd/system", { $0.hasPrefix("cm-") || $0 == "clustermaker.target" }),
                             ("usr/share/man/man5", { Self.isSuiteManPage($0) }), ("usr/share/man/man7", { $0.hasPrefix("clustermaker.") }),
                             ("usr/share/man/man8", { $0.hasPrefix("cm-") || $0.hasPrefix("cmctl.") })] {
            for name in ((try? fm.contentsOfDirectory(atPath: "\(root)/\(dir)")) ?? []).sorted() where match(name) { paths.append("\(dir)/\(name)") }
        }
        // What scripts/setup wrote outside the suite's own directories: nfs-ganesha's
        // configuration (the exports cm-replicad writes, the epoch of each master) and the APT
        // hook's restore points.
        for extra in Self.setupFiles where fm.fileExists(atPath: "\(root)/\(extra)") { paths.append(extra) }
        guard paths.contains(where: { $0.hasPrefix("usr/sbin/cm-") }) else {
            throw CLIError.failed("no ClusterMaker daemons in \(root.isEmpty ? "/" : root)/usr/sbin: install them here first (scripts/setup), or give --source-root")
        }
        let archive = try Self.tar(root: root.isEmpty ? "/" : root, paths: paths)
        try shell.check("tar -C / --no-same-owner -xf - && (getent group clustermaker >/dev/null || groupadd --system clustermaker) && "
                        + "(id clustermaker >/dev/null 2>&1 || useradd --system --gid clustermaker --home-dir /var/lib/clustermaker --shell /usr/sbin/nologin clustermaker) && "
                        + "install -d -m 0755 /var/lib/clustermaker /etc/clustermaker",
                        input: archive, what: "installing ClusterMaker")
        say("\(paths.count) files (\(Format.number(Double(archive.count)))B), user and group clustermaker")
    }

    static let setupFiles = ["etc/ganesha/ganesha.conf", "etc/ganesha/nfs-ganesha", "etc/apt/apt.conf.d/80clustermaker-snapshot"]

    static func isSuiteManPage(_ name: String) -> Bool {
        ["cluster", "healthd", "lbd", "pxed", "vipd", "replicad", "snapd", "webd"].contains { name.hasPrefix("\($0).toml.") }
    }

    mutating func copyConfiguration() throws {
        next("/etc/clustermaker for \(target.name)")
        let staging = NSTemporaryDirectory() + "cm-clone-\(getpid())"
        try? FileManager.default.removeItem(atPath: staging)
        defer { try? FileManager.default.removeItem(atPath: staging) }
        try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: true)
        let fm = FileManager.default
        var rewritten: [String] = []
        guard let walker = fm.enumerator(atPath: configDir) else { throw CLIError.failed("\(configDir): cannot read it") }
        var files: [String] = []
        while let rel = walker.nextObject() as? String {
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: "\(configDir)/\(rel)", isDirectory: &isDir), !isDir.boolValue, !rel.hasSuffix(".example") else { continue }
            files.append(rel)
        }
        for rel in files.sorted() {
            let src = "\(configDir)/\(rel)", dst = "\(staging)/etc/clustermaker/\(rel)"
            try fm.createDirectory(atPath: (dst as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            let data = try Data(contentsOf: URL(fileURLWithPath: src))
            let text = String(decoding: data, as: UTF8.self)
            let out = rel.hasSuffix(".toml") ? HostConfig.rewrite(file: rel, text: text, source: source, target: target) : text
            if out != text { rewritten.append(rel) }
            try (rel.hasSuffix(".toml") ? Data(out.utf8) : data).write(to: URL(fileURLWithPath: dst))
            let mode = ((try? fm.attributesOfItem(atPath: src)[.posixPermissions]) as? Int) ?? 0o644
            try fm.setAttributes([.posixPermissions: mode], ofItemAtPath: dst)
        }
        try shell.check("tar -C / --no-same-owner -xpf -", input: try Self.tar(root: staging, paths: ["etc/clustermaker"]), what: "writing /etc/clustermaker")
        try shell.check("for d in healthd lbd vipd pxed replicad snapd; do [ ! -f /etc/clustermaker/$d.toml ] || cm-$d --check-config --config-dir /etc/clustermaker >/dev/null || exit 1; done",
                        what: "checking the copied configuration")
        say("\(files.count) files; \(target.name)'s own values in \(rewritten.isEmpty ? "none" : rewritten.joined(separator: ", ")); every daemon's --check-config passes there")
    }

    mutating func freshIdentity() throws {
        next("hostname, machine-id, SSH host keys, GlusterFS UUID")
        var changed: [String] = []
        let name = target.name
        let current = try shell.check("cat /etc/hostname 2>/dev/null; true").trimmingCharacters(in: .whitespacesAndNewlines)
        if current != name {
            try shell.check("echo \(name) > /etc/hostname && (hostnamectl set-hostname \(name) 2>/dev/null || hostname \(name))", what: "setting the hostname")
            changed.append("hostname \(name)")
        }
        let mine = (try? String(contentsOfFile: "/etc/machine-id", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        let theirs = try shell.check("cat /etc/machine-id 2>/dev/null; true").trimmingCharacters(in: .whitespacesAndNewlines)
        if theirs.count != 32 || theirs == mine {
            try shell.check("rm -f /etc/machine-id && (systemd-machine-id-setup >/dev/null 2>&1 || cat /proc/sys/kernel/random/uuid | tr -d '-' > /etc/machine-id)",
                            what: "making a machine-id")
            changed.append("machine-id")
        }
        let myKey = (try? String(contentsOfFile: "/etc/ssh/ssh_host_ed25519_key.pub", encoding: .utf8))?.split(separator: " ").dropFirst().first
        let theirKey = try shell.check("cat /etc/ssh/ssh_host_ed25519_key.pub 2>/dev/null; true").split(separator: " ").dropFirst().first
        if theirKey == nil || theirKey == myKey {
            try shell.check("rm -f /etc/ssh/ssh_host_*key /etc/ssh/ssh_host_*key.pub && ssh-keygen -A", what: "making SSH host keys")
            changed.append("SSH host keys")
        }
        let uuid = { (text: String) in text.split(separator: "\n").first { $0.hasPrefix("UUID=") }.map { String($0.dropFirst(5)) } }
        let myUUID = (try? String(contentsOfFile: "/var/lib/glusterd/glusterd.info", encoding: .utf8)).flatMap(uuid)
        let theirUUID = uuid(try shell.check("cat /var/lib/glusterd/glusterd.info 2>/dev/null; true"))
        if let theirUUID, theirUUID == myUUID {
            // glusterd makes a new one when it starts without the file.
            try shell.check("(systemctl stop glusterd 2>/dev/null || { [ ! -f /run/glusterd.pid ] || kill $(cat /run/glusterd.pid); }; true) && rm -f /var/lib/glusterd/glusterd.info",
                            what: "resetting the GlusterFS UUID")
            changed.append("GlusterFS UUID")
        }
        say(changed.isEmpty ? "its own already" : "new \(changed.joined(separator: ", "))")
    }

    mutating func joinVolume() async throws {
        next("pool, brick, heal")
        // "Answers on its socket", not pgrep: a glusterd of another container is not this host's.
        try shell.check("if [ -d /run/systemd/system ]; then systemctl enable --now glusterd >/dev/null 2>&1; else gluster --mode=script volume list >/dev/null 2>&1 || glusterd; fi",
                        what: "starting glusterd")
        try await wait(30, "glusterd answers on \(target.name)") { (try? shell.check("gluster --mode=script volume list >/dev/null 2>&1")) != nil }
        let cli = GlusterCLI(socket: replicad.volume.glusterdSocket)
        let address = target.address.description
        if try !cli.peers().contains(where: { $0.hostname == address && $0.connected }) {
            _ = try cli.run(["peer", "probe", address])
            try await wait(60, "\(address) connected in the pool") { (try? cli.peers())?.contains { $0.hostname == address && $0.connected } == true }
        }
        say("\(target.name) is in the trusted pool")
        let name = replicad.volume.name
        guard var volume = try cli.volume(name) else { throw CLIError.failed("volume \(name) does not exist here: is cm-replicad running on this master?") }
        let brick = "\(address):\(replicad.volume.brick)"
        if !volume.bricks.contains(brick) {
            try shell.check("install -d -m 0755 \(replicad.volume.brick)", what: "making the brick directory")
            var args = ["volume", "add-brick", name, "replica", "\(volume.bricks.count + 1)", brick]
            if replicad.volume.brick == "/" || !replicad.volume.brick.hasPrefix("/") { throw CLIError.failed("brick \(replicad.volume.brick) is not a directory path") }
            args.append("force")  // the brick may be on the root filesystem, as on this master
            _ = try cli.run(args)
            say("brick \(brick) added: replica \(volume.bricks.count + 1)")
            volume = try cli.volume(name) ?? volume
        }
        if volume.replicaCount == 2, volume.arbiterCount == 0 {
            // Two bricks and no arbiter: the one left must go on writing, and what both wrote
            // apart (the write in flight as a link went down) heals to the newer copy instead of
            // failing with EIO until someone resolves it by hand (docs/operations.md).
            for (option, value) in [("cluster.quorum-type", "none"), ("cluster.favorite-child-policy", "mtime")]
            where volume.options[option] != value {
                _ = try cli.run(["volume", "set", name, option, value])
            }
        }
        _ = try? cli.run(["volume", "heal", name, "full"])
        var worst = 0
        let deadline = Date().addingTimeInterval(TimeInterval(healTimeout))
        var lastSaid = Date.distantPast
        while true {
            let pending = ((try? cli.heal(volume)) ?? nil)?.reduce(0) { $0 + $1.pending } ?? 0
            worst = max(worst, pending)
            if pending == 0 { break }
            guard Date() < deadline else { throw CLIError.failed("the heal still has \(pending) entries after \(healTimeout) s: see gluster volume heal \(name) info") }
            if Date().timeIntervalSince(lastSaid) > 2 {
                say("heal \(Int(100 * Double(worst - pending) / Double(max(worst, 1))))% (\(pending) entries pending)")
                lastSaid = Date()
            }
            try await Task.sleep(for: .milliseconds(500))
        }
        say("healed: replica \(volume.replicaCount), \(volume.bricks.count) bricks, nothing pending")
    }

    mutating func startStandby() async throws {
        next("clustermaker.target enabled in standby")
        let systemd = try shell.check("[ -d /run/systemd/system ] && echo yes || echo no").trimmingCharacters(in: .whitespacesAndNewlines) == "yes"
        guard systemd else {
            try shell.check("systemctl enable clustermaker.target >/dev/null 2>&1 || true")
            return say("systemd is not running on \(target.name): clustermaker.target is enabled for its next boot; start the daemons there (cm-vipd first)")
        }
        try shell.check("systemctl daemon-reload && systemctl enable --now clustermaker.target", what: "starting clustermaker.target")
        try await wait(60, "cm-vipd on \(target.name) reports standby") {
            Self.role((try? shell.check("cmctl vip status --json --runtime-dir \(runtimeDir)")) ?? "")?.role == "standby"
        }
        say("running, standby")
    }

    // MARK: Helpers

    /// Role and epoch from `cmctl vip status --json` (another version's cmctl may print more).
    static func role(_ json: String) -> (role: String, epoch: UInt64)? {
        struct Role: Decodable { var role: String; var epoch: UInt64 }
        return (try? JSONDecoder().decode(Role.self, from: Data(json.utf8))).map { ($0.role, $0.epoch) }
    }

    func wait(_ seconds: Int, _ what: String, _ ok: () throws -> Bool) async throws {
        let deadline = Date().addingTimeInterval(TimeInterval(seconds))
        while try !ok() {
            guard Date() < deadline else { throw CLIError.failed("timed out after \(seconds) s waiting for: \(what)") }
            try await Task.sleep(for: .milliseconds(300))
        }
    }

    /// A tar stream of `paths` (relative to `root`), owned by root.
    static func tar(root: String, paths: [String]) throws -> Data {
        let out = try local("/bin/tar", ["-C", root, "--owner=root", "--group=root", "-cf", "-"] + paths, binary: true)
        return out.data
    }

    static func local(_ program: String, _ args: [String]) throws -> String { try local(program, args, binary: false).text }

    static func local(_ program: String, _ args: [String], binary: Bool) throws -> (data: Data, text: String) {
        let r = try LocalCommand.run(program, args)
        guard r.status == 0 else { throw CLIError.failed("\(program) \(args.prefix(4).joined(separator: " ")): \(r.errors)") }
        return (r.output, binary ? "" : r.text)
    }
}
