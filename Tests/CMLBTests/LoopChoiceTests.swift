@testable import CMLB
import Testing

/// Which event loop a new connection goes to (`L4Engine.choose`).
@Suite struct LoopChoiceTests {
    let cpus: [Int?] = [0, 1, 2, 3]

    @Test func withoutItsCPUTheAcceptorKeepsItUnlessAnotherHasTwoFewer() {
        #expect(L4Engine.choose(acceptor: 0, loads: [5, 4, 5, 5], cpus: cpus, incomingCPU: -1) == 0)
        #expect(L4Engine.choose(acceptor: 0, loads: [5, 3, 4, 5], cpus: cpus, incomingCPU: -1) == 1)
        // The fewest wins among those two below.
        #expect(L4Engine.choose(acceptor: 3, loads: [3, 1, 4, 5], cpus: cpus, incomingCPU: -1) == 1)
        // A CPU no loop runs on, or unpinned loops: the same rule.
        #expect(L4Engine.choose(acceptor: 0, loads: [5, 3, 4, 5], cpus: cpus, incomingCPU: 7) == 1)
        #expect(L4Engine.choose(acceptor: 0, loads: [5, 3], cpus: [nil, nil], incomingCPU: 0) == 1)
    }

    @Test func aConnectionGoesToTheLoopOnItsCPUWhileTheLoopsStayEvenEnough() {
        #expect(L4Engine.choose(acceptor: 0, loads: [0, 0, 0, 0], cpus: cpus, incomingCPU: 2) == 2)
        // Up to 8 above the least loaded…
        #expect(L4Engine.choose(acceptor: 0, loads: [0, 0, 8, 0], cpus: cpus, incomingCPU: 2) == 2)
        #expect(L4Engine.choose(acceptor: 0, loads: [0, 1, 9, 1], cpus: cpus, incomingCPU: 2) == 0)
        // …or a quarter more, when that is more.
        #expect(L4Engine.choose(acceptor: 1, loads: [100, 100, 125, 110], cpus: cpus, incomingCPU: 2) == 2)
        #expect(L4Engine.choose(acceptor: 1, loads: [100, 100, 126, 110], cpus: cpus, incomingCPU: 2) == 1)
        // Two loops on one CPU (more threads than CPUs): the less loaded of them.
        #expect(L4Engine.choose(acceptor: 0, loads: [3, 2, 1, 0], cpus: [0, 1, 0, 1], incomingCPU: 0) == 2)
    }

    @Test func allTrafficOnOneCPUStillSpreadsOverEveryLoop() {
        var loads = [0, 0, 0, 0]
        for _ in 0..<400 {
            let i = L4Engine.choose(acceptor: 0, loads: loads, cpus: cpus, incomingCPU: 0)
            loads[i] += 1
        }
        #expect(loads.min()! >= 80 && loads[0] <= loads.min()! + L4Engine.skew(loads.min()!))
        #expect(loads[0] > loads[1])
    }
}
