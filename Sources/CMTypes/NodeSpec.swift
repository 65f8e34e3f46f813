/// A node as an admin describes it: what `cmctl node add` sends to cm-pxed, and one entry of
/// an inventory file for `cmctl node import`. Unset fields take cm-pxed's defaults (the next
/// name from the pattern, the next free address, the default group, the group's image).
public struct NodeSpec: Codable, Sendable, Equatable {
    public var name: String?
    public var mac: MACAddress
    public var address: IPv4Address?
    public var group: String?
    public var image: String?
    public var kernelArgs: String?
    /// Its BMC's address, for reboots over IPMI (ipmitool).
    public var bmc: IPv4Address?

    public init(name: String? = nil, mac: MACAddress, address: IPv4Address? = nil, group: String? = nil, image: String? = nil,
                kernelArgs: String? = nil, bmc: IPv4Address? = nil) {
        self.name = name
        self.mac = mac
        self.address = address
        self.group = group
        self.image = image
        self.kernelArgs = kernelArgs
        self.bmc = bmc
    }
}
