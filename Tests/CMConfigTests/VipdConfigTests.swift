import CMConfig
import CMTypes
import Testing

func vipdErrors(_ text: String) -> String {
    do {
        _ = try VipdConfig.parse(ConfigSource(path: "vipd.toml", text: text))
        return "no error"
    } catch {
        return "\(error)"
    }
}

let minimalInstance = "[[instance]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvrid = 51\naddresses = [\"10.77.0.100/24\"]\n"

@Suite struct VipdConfigTests {
    @Test func exampleLoadsWithTheDefaultsItsCommentsState() throws {
        let v = try VipdConfig.load(configDir: repoRoot + "/etc/clustermaker")
        #expect(v.vipd.realtimePriority == 10)
        #expect(v.roleInstanceName == "VI_1")
        let i = try #require(v.instances.first)
        #expect(i.interface == "eth0" && i.vrid == 51 && i.priority == 150)
        #expect(i.advertInterval == .seconds(1) && i.advertIntervalCentiseconds == 100)
        #expect(i.preempt && i.preemptDelay == .zero && i.preemptAfterSync)
        #expect(i.addresses == [IPv4InterfaceAddress("10.77.0.100/24")!])
        #expect(i.garpCount == 5 && i.garpInterval == .zero && i.garpMasterDelay == .seconds(5) && i.trackWeight == 50)
    }

    @Test func minimalInstanceGetsDefaults() throws {
        let v = try VipdConfig.parse(ConfigSource(path: "vipd.toml", text: minimalInstance))
        #expect(v.instances == [VRRPInstanceConfig(name: "VI_1", interface: "eth0", vrid: 51, addresses: [IPv4InterfaceAddress("10.77.0.100/24")!])])
        #expect(v.vipd.realtimePriority == 10)
        #expect(v.instances.first?.useVMAC == false && v.instances.first?.vmacInterface == "vrrp.51")
    }

    @Test func centisecondsFromIntervals() throws {
        let v = try VipdConfig.parse(ConfigSource(path: "vipd.toml", text: minimalInstance + "advert_interval = \"10ms\"\n"))
        #expect(v.instances.first?.advertIntervalCentiseconds == 1)
        let w = try VipdConfig.parse(ConfigSource(path: "vipd.toml", text: minimalInstance + "advert_interval = \"40950ms\"\n"))
        #expect(w.instances.first?.advertIntervalCentiseconds == 4095)
    }

    @Test(arguments: [
        (minimalInstance.replacingOccurrences(of: "vrid = 51", with: "vrid = 256"), #"vipd.toml:4:8: instance "VI_1": vrid: 256 out of range 1…255"#),
        (minimalInstance + "priority = 0\n", #"vipd.toml:6:12: instance "VI_1": priority: 0 out of range 1…255"#),
        (minimalInstance + "advert_interval = \"15ms\"\n",
         #"vipd.toml:6:19: instance "VI_1": advert_interval: 15ms is not a whole number of centiseconds (VRRPv3 counts in 10 ms)"#),
        (minimalInstance + "advert_interval = \"41s\"\n", #"vipd.toml:6:19: instance "VI_1": advert_interval: 41s out of range 10ms…40s950ms"#),
        (minimalInstance.replacingOccurrences(of: "10.77.0.100/24", with: "10.77.0.300/24"),
         #"vipd.toml:5:13: instance "VI_1": addresses: "10.77.0.300/24" is not an IPv4 address with optional prefix length (e.g. "10.77.0.100/24")"#),
        ("[[instance]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvrid = 51\n", #"vipd.toml:1:1: instance "VI_1": missing required key "addresses""#),
        (minimalInstance.replacingOccurrences(of: "eth0", with: "a/b"),
         #"vipd.toml:3:13: instance "VI_1": interface: "a/b" is not an interface name (1-15 characters, no "/" or spaces)"#),
        (minimalInstance + minimalInstance, #"vipd.toml:7:8: instance "VI_1": name: duplicate instance name "VI_1""#),
        (minimalInstance + minimalInstance.replacingOccurrences(of: "VI_1", with: "VI_2"),
         #"vipd.toml:9:8: instance "VI_2": vrid: VRID 51 on eth0 is already instance "VI_1"'s"#),
        (minimalInstance + "preempt = false\npreempt_delay = \"5s\"\n", #"vipd.toml:7:17: instance "VI_1": preempt_delay: has no effect with preempt = false"#),
        (minimalInstance + "preempt = false\npreempt_after_sync = true\n", #"vipd.toml:7:22: instance "VI_1": preempt_after_sync: has no effect with preempt = false"#),
        (minimalInstance + "track_checks = [\"web\"]\n",
         #"vipd.toml:6:16: instance "VI_1": track_checks: "web" is not a check id (CHECK@NODE, as cmctl health list shows)"#),
        (minimalInstance + "priority = 255\ntrack_interfaces = [\"eth1\"]\n",
         #"vipd.toml:6:12: instance "VI_1": priority: 255 is the address owner's priority, which tracking cannot lower; use 254 or less with track_checks/track_interfaces"#),
        (minimalInstance + "notify_master = [\"notify.sh\"]\n",
         #"vipd.toml:6:17: instance "VI_1": notify_master: "notify.sh" must be an absolute path (there is no shell and no PATH search)"#),
        (minimalInstance + "unicast_peers = [\"10.77.0.2\", \"peer\"]\n", #"vipd.toml:6:17: instance "VI_1": unicast_peers: "peer" is not an IPv4 address"#),
        (minimalInstance + "garp_count = 1000\n", #"vipd.toml:6:14: instance "VI_1": garp_count: 1000 out of range 0…100"#),
        (minimalInstance + "advert_intervall = \"1s\"\n", #"vipd.toml:6:1: instance "VI_1": advert_intervall: unknown key (did you mean "advert_interval"?)"#),
        ("[vipd]\nrole_instance = \"VI_9\"\n" + minimalInstance, #"vipd.toml:2:17: vipd: role_instance: no [[instance]] is named "VI_9""#),
        (minimalInstance + "vmac_interface = \"vrrp.51\"\n", #"vipd.toml:6:18: instance "VI_1": vmac_interface: has no effect without use_vmac = true"#),
        (minimalInstance + "use_vmac = true\nvmac_interface = \"eth0\"\n",
         #"vipd.toml:7:18: instance "VI_1": vmac_interface: must differ from interface "eth0": it is created on top of it"#),
        (minimalInstance + "use_vmac = true\n" + minimalInstance.replacingOccurrences(of: "VI_1", with: "VI_2").replacingOccurrences(of: "eth0", with: "eth1") + "use_vmac = true\n",
         #"vipd.toml:7:1: instance "VI_2": vmac_interface: vrrp.51 is already instance "VI_1"'s virtual-MAC interface"#),
        ("[vipd]\nrealtime_priority = 100\n", #"vipd.toml:2:21: vipd: realtime_priority: 100 out of range 0…99"#),
    ])
    func errorMessages(text: String, expected: String) {
        #expect(vipdErrors(text) == expected)
    }
}
