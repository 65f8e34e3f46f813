import CMWire

/// Turns successive node-exporter scrapes of one node into the suite's series. Counters
/// become rates against the previous scrape; a counter that went backwards (a reboot) yields
/// no rate for that scrape.
public struct NodeMetricsCalculator: Sendable {
    struct Counters: Sendable {
        var atMs: Int64
        var cpuIdle: Double
        var cpuTotal: Double
        var netRx: Double
        var netTx: Double
        var diskRead: Double
        var diskWritten: Double
    }

    var previous: Counters?

    public init() {}

    public mutating func update(samples: [PrometheusSample], atMs: Int64) -> [String: Double] {
        var out: [String: Double] = [:]
        var idle = 0.0, total = 0.0, rx = 0.0, tx = 0.0, read = 0.0, written = 0.0
        var memTotal: Double?, memAvailable: Double?, fsSize: Double?, fsAvail: Double?
        for s in samples {
            switch s.name {
            case "node_cpu_seconds_total":
                total += s.value
                if s.label("mode") == "idle" || s.label("mode") == "iowait" { idle += s.value }
            case "node_memory_MemTotal_bytes": memTotal = s.value
            case "node_memory_MemAvailable_bytes": memAvailable = s.value
            case "node_load1": out["load1"] = s.value
            case "node_load5": out["load5"] = s.value
            case "node_load15": out["load15"] = s.value
            case "node_network_receive_bytes_total" where s.label("device") != "lo": rx += s.value
            case "node_network_transmit_bytes_total" where s.label("device") != "lo": tx += s.value
            case "node_disk_read_bytes_total": read += s.value
            case "node_disk_written_bytes_total": written += s.value
            case "node_filesystem_size_bytes" where s.label("mountpoint") == "/": fsSize = s.value
            case "node_filesystem_avail_bytes" where s.label("mountpoint") == "/": fsAvail = s.value
            default: break
            }
        }
        if let memTotal, let memAvailable, memTotal > 0 {
            out["mem_total_bytes"] = memTotal
            out["mem_used_bytes"] = memTotal - memAvailable
            out["mem_percent"] = (memTotal - memAvailable) / memTotal * 100
        }
        if let fsSize, let fsAvail, fsSize > 0 { out["fs_used_percent"] = (fsSize - fsAvail) / fsSize * 100 }
        let now = Counters(atMs: atMs, cpuIdle: idle, cpuTotal: total, netRx: rx, netTx: tx, diskRead: read, diskWritten: written)
        if let p = previous, atMs > p.atMs {
            let seconds = Double(atMs - p.atMs) / 1000
            func rate(_ a: Double, _ b: Double) -> Double? { b >= a ? (b - a) / seconds : nil }
            let dTotal = total - p.cpuTotal, dIdle = idle - p.cpuIdle
            if dTotal > 0, dIdle >= 0 { out["cpu_percent"] = max(0, min(100, 100 * (1 - dIdle / dTotal))) }
            out["net_rx_bytes_per_s"] = rate(p.netRx, rx)
            out["net_tx_bytes_per_s"] = rate(p.netTx, tx)
            out["disk_read_bytes_per_s"] = rate(p.diskRead, read)
            out["disk_write_bytes_per_s"] = rate(p.diskWritten, written)
        }
        previous = now
        return out
    }
}
