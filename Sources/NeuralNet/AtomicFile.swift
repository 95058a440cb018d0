import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes files so that a reader (or a crash, a kill or a full disk) sees either the old
/// complete file or the new complete file, never a half-written one: the bytes go to a
/// temporary file in the same directory, are flushed to disk, and the temporary file is
/// renamed over the destination.
public enum AtomicFile {
    /// Writes `data` to `url` atomically, creating missing parent directories.
    public static func write(_ data: Data, to url: URL) throws(FileWriteError) {
        let directory = url.deletingLastPathComponent()
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw FileWriteError(url.path, "cannot create its directory (\(describe(error)))")
        }
        let temporary = directory.appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        let descriptor = open(temporary.path, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        guard descriptor >= 0 else { throw FileWriteError(url.path, "cannot be written (\(errnoMessage()))") }
        var failure: String?
        data.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let written = posixWrite(descriptor, raw.baseAddress! + offset, raw.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    failure = errnoMessage()
                    return
                }
                offset += written
            }
        }
        if failure == nil, fsync(descriptor) != 0 { failure = errnoMessage() }
        if close(descriptor) != 0, failure == nil { failure = errnoMessage() }
        if failure == nil, rename(temporary.path, url.path) != 0 { failure = errnoMessage() }
        if let failure {
            unlink(temporary.path)
            throw FileWriteError(url.path, "cannot be written (\(failure)); any previous file is unchanged")
        }
        // Make the rename itself durable.
        let directoryDescriptor = open(directory.path, O_RDONLY)
        if directoryDescriptor >= 0 {
            fsync(directoryDescriptor)
            close(directoryDescriptor)
        }
    }

    private static func errnoMessage() -> String { String(cString: strerror(errno)) }
}

#if canImport(Glibc)
private let posixWrite = Glibc.write
#elseif canImport(Darwin)
private let posixWrite = Darwin.write
#endif

/// An output file that could not be written.
public struct FileWriteError: Error, CustomStringConvertible, Equatable, Sendable {
    /// One line naming the file and what went wrong.
    public let description: String
    /// Creates an error for `path`.
    public init(_ path: String, _ problem: String) { description = "\(path): \(problem)" }
}

/// A short human description of a Foundation or POSIX error.
func describe(_ error: any Error) -> String {
    let nsError = error as NSError
    if let underlying = nsError.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
        return String(cString: strerror(Int32(underlying.code)))
    }
    if nsError.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(nsError.code))) }
    switch nsError.code {
    case NSFileReadNoSuchFileError: return "no such file"
    case NSFileReadNoPermissionError: return "permission denied"
    default: return nsError.localizedDescription
    }
}

/// Reads whole input files with one clear line when that fails (missing, a directory,
/// unreadable), shared by every parser so that all of them say it the same way.
public enum InputFile {
    /// The file's bytes, or a message "`path`: what is wrong".
    public static func read(_ url: URL) -> Result<Data, FileReadError> {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            return .failure(FileReadError("\(url.path): no such file"))
        }
        guard !isDirectory.boolValue else { return .failure(FileReadError("\(url.path): is a directory, not a file")) }
        do {
            return .success(try Data(contentsOf: url, options: .mappedIfSafe))
        } catch {
            return .failure(FileReadError("\(url.path): cannot be read (\(describe(error)))"))
        }
    }
}

/// An input file that could not be read.
public struct FileReadError: Error, CustomStringConvertible, Equatable, Sendable {
    /// One line naming the file and what went wrong.
    public let description: String
    /// Creates an error with its message.
    public init(_ description: String) { self.description = description }
}
