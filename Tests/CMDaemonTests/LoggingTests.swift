@testable import CMDaemon
import Testing

@Suite struct JournalFieldTests {
    @Test(arguments: [
        ("node", "CM_NODE"),
        ("backend", "CM_BACKEND"),
        ("check-id", "CM_CHECK_ID"),
        ("9lives", nil),
        ("", nil),
    ] as [(String, String?)])
    func metadataKeysBecomeJournalFields(key: String, field: String?) {
        #expect(JournalField.name(for: key) == field)
    }
}
