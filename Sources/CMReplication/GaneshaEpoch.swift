import CMConfig
import CMTypes
import Foundation

/// The server epoch each master's nfs-ganesha starts with (`ganesha.nfsd -E`, which Debian's
/// nfs-ganesha-config.service takes from `EPOCH_EXEC` in /etc/ganesha/nfs-ganesha).
///
/// ganesha's client ids and state ids carry its epoch, by default the second it started. Two
/// masters whose ganesha started in the same second (a power cut, a test) hand out the same
/// ids: a node that moves from one to the other presents ids the new server takes for its own
/// expired ones (seen in ganesha's log on failing back) instead of another server's, stale
/// ones. As ganesha's clustered setups do, the epoch is this master's node id
/// in the top 16 bits (its place in cluster.toml's [[master]] list, from 1) and a generation in
/// the low 16, one more on every start: different between masters, and between one master's
/// starts.
public enum GaneshaEpoch {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// The node id of `master`: its place in cluster.toml's list of masters, from 1.
    public static func nodeID(of master: String, in cluster: ClusterConfig) throws(Failure) -> UInt32 {
        guard let i = cluster.masters.firstIndex(where: { $0.name == master }) else {
            let names = cluster.masters.map(\.name)
            throw Failure(description: "master \"\(master)\" is not in cluster.toml's [[master]] list (\(names.isEmpty ? "empty" : names.joined(separator: ", "))): ganesha keeps its own epoch")
        }
        guard i < 0x7fff else { throw Failure(description: "more than 32766 masters in cluster.toml") }
        return UInt32(i + 1)
    }

    /// The next epoch for `master`: the generation in `generationFile` goes up by one (after
    /// 65535 comes 0), written before the epoch is given out.
    public static func next(master: String, cluster: ClusterConfig, generationFile: String) throws -> UInt32 {
        let node = try nodeID(of: master, in: cluster)
        let text = (try? String(contentsOfFile: generationFile, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        let previous = text.flatMap { UInt32($0) } ?? 0
        let generation = (previous + 1) & 0xffff
        try replaceFile(generationFile, with: Data("\(generation)\n".utf8))
        return node << 16 | generation
    }
}
