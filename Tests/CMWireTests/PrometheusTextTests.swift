@testable import CMWire
import Testing

@Suite struct PrometheusTextTests {
    @Test func familiesWithHelpTypeAndSamples() {
        var out = PrometheusText()
        out.family("cm_x_total", .counter, help: "Things counted.", [.init([("a", "1"), ("b", "two")], 42), .init([("a", "2"), ("b", "")], 0)])
        out.family("cm_y", .gauge, help: "A level.", [.init([], 0.25)])
        out.family("cm_empty", .gauge, help: "No samples yet.", [])
        #expect(out.text == """
            # HELP cm_x_total Things counted.
            # TYPE cm_x_total counter
            cm_x_total{a="1",b="two"} 42
            cm_x_total{a="2",b=""} 0
            # HELP cm_y A level.
            # TYPE cm_y gauge
            cm_y 0.25
            # HELP cm_empty No samples yet.
            # TYPE cm_empty gauge

            """)
    }

    @Test func labelValuesAndHelpAreEscaped() {
        var out = PrometheusText()
        out.family("cm_z", .gauge, help: "back\\slash\nnew \"line\"", [.init([("node", "we\"ird\\na\nme")], 1)])
        #expect(out.text == "# HELP cm_z back\\\\slash\\nnew \"line\"\n# TYPE cm_z gauge\ncm_z{node=\"we\\\"ird\\\\na\\nme\"} 1\n")
    }

    @Test(arguments: [(1.0, "1"), (-3.0, "-3"), (0.5, "0.5"), (1e20, "1e+20"), (Double.nan, "NaN"), (Double.infinity, "+Inf"), (-Double.infinity, "-Inf")])
    func valuesAreFormatted(value: Double, text: String) {
        #expect(PrometheusText.format(value) == text)
    }

    @Test func names() {
        #expect(PrometheusText.isValidName("cm_lbd:x_1"))
        #expect(!PrometheusText.isValidName("1abc"))
        #expect(!PrometheusText.isValidName("a-b"))
        #expect(!PrometheusText.isValidName(""))
    }
}
