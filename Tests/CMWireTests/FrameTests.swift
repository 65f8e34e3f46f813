import CMTypes
import CMWire
import NIOCore
import Foundation
import Testing

@Suite struct FrameTests {
    func frame(_ payload: [UInt8]) -> ByteBuffer {
        var b = ByteBuffer()
        Frame.encode(payload, into: &b)
        return b
    }

    @Test func roundTrip() throws {
        var buffer = frame(Array("hello".utf8))
        var second = frame(Array("world".utf8))
        buffer.writeBuffer(&second)
        let first = try #require(try Frame.decode(from: &buffer))
        let next = try #require(try Frame.decode(from: &buffer))
        #expect(String(buffer: first) == "hello")
        #expect(String(buffer: next) == "world")
        #expect(buffer.readableBytes == 0)
    }

    @Test(arguments: [0, 1, 3, 4, 6])
    func partialFrameConsumesNothing(prefix: Int) throws {
        let whole = frame(Array("payload".utf8))
        var partial = whole.getSlice(at: 0, length: prefix)!
        #expect(try Frame.decode(from: &partial) == nil)
        #expect(partial.readableBytes == prefix)
    }

    @Test func oversizedLengthIsRejectedBeforeThePayloadArrives() {
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(2 << 20), endianness: .big)  // 2 MiB announced, nothing sent
        #expect(throws: WireError(.frameTooLarge, "frame of 2097152 bytes exceeds the limit of 1048576 bytes")) {
            try Frame.decode(from: &buffer)
        }
    }

    @Test func limitIsConfigurable() {
        var buffer = frame(Array(repeating: 0x41, count: 100))
        #expect(throws: WireError.self) { try Frame.decode(from: &buffer, maximumLength: 99) }
        var ok = frame(Array(repeating: 0x41, count: 99))
        #expect((try? Frame.decode(from: &ok, maximumLength: 99)) != nil)
    }

    @Test func emptyFrameIsAnError() {
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(0), endianness: .big)
        #expect(throws: WireError(.badFrame, "empty frame")) { try Frame.decode(from: &buffer) }
    }
}

@Suite struct EnvelopeTests {
    func envelope(_ json: String) throws(WireError) -> ReceivedEnvelope {
        try ReceivedEnvelope(payload: ByteBuffer(string: json))
    }

    @Test func decodesHeaderAndTypedBody() throws {
        let e = try envelope(#"{"v":1,"kind":"request","id":7,"type":"health.list","body":{"node":"node001","state":"down"}}"#)
        #expect(e.header == EnvelopeHeader(kind: .request, id: 7, type: "health.list"))
        let body = try e.body(as: HealthListRequest.self)
        #expect(body == HealthListRequest(node: "node001", state: .down))
    }

    @Test func encodesWhatItDecodes() throws {
        let when = Date(timeIntervalSince1970: 1_700_000_000.5)
        let t = HealthTransition(id: CheckID("web@node002")!, from: .up, to: .down, at: when, message: "HTTP 503")
        let payload = try ByteBuffer.envelope(EnvelopeHeader(kind: .event, id: 3, type: MessageType.healthTransition), body: t)
        let back = try ReceivedEnvelope(payload: payload)
        #expect(back.header.kind == .event)
        #expect(try back.body(as: HealthTransition.self) == t)
        #expect(String(buffer: payload).contains(#""at":1700000000500"#))
    }

    @Test(arguments: [
        (#"not json"#, WireError.Code.badEnvelope),
        (#"{"v":1,"kind":"request","id":1}"#, .badEnvelope),
        (#"{"v":2,"kind":"request","id":1,"type":"x"}"#, .versionMismatch),
        (#"{"v":1,"kind":"shout","id":1,"type":"x"}"#, .badEnvelope),
        (#"{"v":1,"kind":"request","id":-1,"type":"x"}"#, .badEnvelope),
        (#"{"v":1,"kind":"request","id":1,"type":""}"#, .badEnvelope),
        ("{\"v\":1,\"kind\":\"request\",\"id\":1,\"type\":\"\(String(repeating: "x", count: 65))\"}", .badEnvelope),
    ])
    func rejectsBadEnvelopes(json: String, code: WireError.Code) {
        do {
            _ = try envelope(json)
            Issue.record("accepted \(json)")
        } catch {
            #expect(error.code == code)
        }
    }

    @Test func badBodyNamesTheField() throws {
        let e = try envelope(#"{"v":1,"kind":"request","id":1,"type":"health.show","body":{"id":"no-at-sign"}}"#)
        do {
            _ = try e.body(as: HealthShowRequest.self)
            Issue.record("accepted a bad check id")
        } catch {
            #expect(error.code == .invalidArgument)
            #expect(error.message.hasPrefix("health.show: bad body: id: not a check id (CHECK@NODE): no-at-sign"))
        }
    }
}
