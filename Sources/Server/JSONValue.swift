import Foundation

/// A JSON value as a client sent it, decoded without a schema so that every field can be
/// checked by hand and a wrong one named in one sentence (a 400), instead of a decoder's
/// coding-path message.
enum JSONValue: Decodable, Equatable, Sendable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    /// Parses a request body: one JSON object.
    static func object(from data: Data) throws(APIError) -> JSONObject {
        guard !data.isEmpty else { throw APIError("the request body is empty; send a JSON object") }
        let value: JSONValue
        do {
            value = try JSONDecoder().decode(JSONValue.self, from: data)
        } catch {
            throw APIError("the request body is not valid JSON")
        }
        guard case .object(let fields) = value else { throw APIError("the request body must be a JSON object") }
        return JSONObject(fields: fields)
    }

    /// What a client sees in an error message: the kind of value it sent.
    var kind: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .number: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }
}

/// The fields of a request object, read one by one with their checks; unknown fields are
/// an error (a misspelt `maxsteps` should not be silently ignored).
struct JSONObject: Sendable {
    let fields: [String: JSONValue]

    /// Fails when the object has a field not in `known`.
    func allowOnly(_ known: Set<String>) throws(APIError) {
        if let unknown = fields.keys.sorted().first(where: { !known.contains($0) }) {
            throw APIError("unknown field '\(unknown)' (known: \(known.sorted().joined(separator: ", ")))")
        }
    }

    /// The field's value, nil when absent or null.
    subscript(name: String) -> JSONValue? {
        switch fields[name] {
        case .none, .null?: nil
        case let value?: value
        }
    }

    /// A number field, nil when absent; checked finite and within `range`.
    func number(_ name: String, in range: ClosedRange<Double>) throws(APIError) -> Double? {
        guard let value = self[name] else { return nil }
        guard case .number(let x) = value else { throw APIError("'\(name)' must be a number, got \(value.kind)") }
        guard range.contains(x) else {
            throw APIError("'\(name)' must be between \(format(range.lowerBound)) and \(format(range.upperBound)), got \(format(x))")
        }
        return x
    }

    /// A whole-number field, nil when absent; checked within `range`.
    func integer(_ name: String, in range: ClosedRange<Int>) throws(APIError) -> Int? {
        guard let value = self[name] else { return nil }
        guard case .number(let x) = value, x.rounded() == x, abs(x) < 1e15 else {
            let sent = if case .number(let x) = value { format(x) } else { value.kind }
            throw APIError("'\(name)' must be a whole number, got \(sent)")
        }
        guard range.contains(Int(x)) else {
            throw APIError("'\(name)' must be between \(range.lowerBound) and \(range.upperBound), got \(Int(x))")
        }
        return Int(x)
    }

    /// A string field, nil when absent; checked to be one of `choices`.
    func choice(_ name: String, of choices: [String]) throws(APIError) -> String? {
        guard let value = self[name] else { return nil }
        guard case .string(let text) = value, choices.contains(text) else {
            let sent = if case .string(let text) = value { "'\(text)'" } else { value.kind }
            throw APIError("'\(name)' must be one of \(choices.map { "\"\($0)\"" }.joined(separator: ", ")), got \(sent)")
        }
        return text
    }

    /// An image field: `count` numbers in [0, 1], row-major.
    func image(_ name: String, count: Int) throws(APIError) -> [Float]? {
        guard let value = self[name] else { return nil }
        return try Self.image(value, name: name, count: count)
    }

    /// An image value: `count` numbers in [0, 1], row-major.
    static func image(_ value: JSONValue, name: String, count: Int) throws(APIError) -> [Float] {
        guard case .array(let items) = value else {
            throw APIError("'\(name)' must be an array of \(count) numbers in [0, 1], got \(value.kind)")
        }
        guard items.count == count else {
            throw APIError("'\(name)' must hold \(count) numbers (28×28, row-major), got \(items.count)")
        }
        var pixels = [Float]()
        pixels.reserveCapacity(count)
        for (index, item) in items.enumerated() {
            guard case .number(let x) = item, x >= 0, x <= 1 else {
                let sent = if case .number(let x) = item { format(x) } else { item.kind }
                throw APIError("'\(name)' must hold numbers in [0, 1]; item \(index) is \(sent)")
            }
            pixels.append(Float(x))
        }
        return pixels
    }
}

/// A number as a person writes it: `5`, not `5.0`; `0.25`.
private func format(_ x: Double) -> String {
    x.rounded() == x && abs(x) < 1e15 ? String(Int(x)) : String(x)
}

/// A client's mistake, answered with a status (400 unless said otherwise) and
/// `{"error": "one sentence"}`.
struct APIError: Error, Sendable, Equatable {
    /// The HTTP status code.
    let status: Int
    /// One sentence naming what is wrong.
    let message: String

    init(_ message: String, status: Int = 400) {
        self.message = message
        self.status = status
    }
}
