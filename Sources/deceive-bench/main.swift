// deceive-bench: throughput of training, evaluation and input-gradient steps, as
// images/s and as a fraction of the machine's roofline: the best sgemm among the BLAS
// kernels this CPU can run, each measured in the same run (in a child process, because
// OpenBLAS fixes its kernel when it loads), not only the one the library happens to pick.
//
//   deceive-bench [--arch seed] [--seconds 3] [--model models/mnist-cnn.safetensors]
//                 [--certified-model models/mnist-cnn-certified.safetensors] [--output out/bench.json]
//
// Then a certified-training (IBP) step on the certified model's architecture, certification
// (IBP and CROWN) of 1,000 test digits of that model, and every attack's images/s on 1,000
// test digits of the shipped model; `--skip-attacks` leaves out both the certification rows
// and the attacks.

import Adversarial
import Datasets
import Foundation
import NeuralNet

struct Measurement: Encodable {
    let name: String
    let batchSize: Int
    let itemsPerSecond: Double
    let gflops: Double
    let fractionOfRoofline: Double
    let target: Double?
}

struct AttackMeasurement: Encodable {
    let attack: String
    let images: Int
    let seconds: Double
    let imagesPerSecond: Double
    let secondsPerImage: Double
    let successRate: Double
    /// Universal perturbations: the part of `seconds` spent learning on training images.
    let learningSeconds: Double?
}

struct CertificationMeasurement: Encodable {
    let method: String
    let epsilon: Float
    let images: Int
    let seconds: Double
    let imagesPerSecond: Double
    let verifiedAccuracy: Double
}

struct KernelMeasurement: Encodable {
    let kernel: String
    let isa: String
    let gflops: Double
}

struct Report: Encodable {
    let architecture: String
    let cpu: String
    let isa: String
    let blas: String
    let kernel: String
    let kernelISA: String
    let threads: Int
    /// sgemm 2048³ on all threads, with the kernel in use.
    let sgemmGFLOPs: Double
    /// The same, for each kernel family the CPU can run.
    let kernels: [KernelMeasurement]
    /// The best of those: the fractions below are of this.
    let rooflineGFLOPs: Double
    /// cores × 2 FMA units × lanes × 2 × nominal clock (indicative only).
    let isaPeakGFLOPs: Double?
    let warning: String?
    let measurements: [Measurement]
    let certification: [CertificationMeasurement]
    let attacks: [AttackMeasurement]
}

func value(of flag: String) -> String? {
    let arguments = CommandLine.arguments
    guard let index = arguments.firstIndex(of: flag), index + 1 < arguments.count else { return nil }
    return arguments[index + 1]
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("deceive-bench: error: \(message)\n".utf8))
    exit(2)
}

// A child run: measure the loaded kernel's sgemm and print the GFLOP/s only.
if CommandLine.arguments.contains("--sgemm-probe") {
    let seconds = Double(value(of: "--seconds") ?? "1") ?? 1
    print(String(format: "%.3f", measureSGEMM(size: 2048, seconds: seconds, threads: Compute.threadCount)))
    exit(0)
}

let architecture: Architecture
do {
    architecture = try Architecture.resolve(value(of: "--arch") ?? "seed")
} catch {
    fail(error.description)
}
guard let seconds = Double(value(of: "--seconds") ?? "3"), seconds > 0, seconds.isFinite else {
    fail("--seconds must be a positive number")
}
let output = value(of: "--output")
let threads = Compute.threadCount
let backend: BLASBackend
do {
    backend = try BLASBackend.load()
} catch {
    fail(error.description)
}
let cpu = CPU.current

/// Runs `body` (which processes `items` items) repeatedly for `seconds`, after one warm-up.
func throughput(items: Int, _ body: () -> Void) -> Double {
    body()
    let clock = ContinuousClock()
    let start = clock.now
    var runs = 0
    repeat {
        body()
        runs += 1
    } while (clock.now - start).seconds < seconds
    return Double(runs * items) / (clock.now - start).seconds
}

/// sgemm 2048³ on all threads with OpenBLAS forced to `kernel`, measured by a child process.
func probe(kernel: String) -> Double? {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL
    process.arguments = ["--sgemm-probe", "--seconds", String(min(seconds, 1))]
    var environment = ProcessInfo.processInfo.environment
    environment["OPENBLAS_CORETYPE"] = kernel
    process.environment = environment
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = FileHandle.nullDevice
    do { try process.run() } catch { return nil }
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else { return nil }
    return Double(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
}

/// cores × 2 FMA units × Float32 lanes × 2 FLOPs × the nominal clock of /proc/cpuinfo.
func isaPeak() -> Double? {
    guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
        let line = text.split(separator: "\n").first(where: { $0.hasPrefix("cpu MHz") }),
        let megahertz = Double(line.split(separator: ":").last?.trimmingCharacters(in: .whitespaces) ?? "")
    else { return nil }
    return Double(threads * 2 * cpu.isa.lanes * 2) * megahertz / 1000
}

print("cpu: \(cpu), \(cpu.isa)")
print("engine: \(backend.summary), \(threads) threads")
let warning = backend.warning
func shout(_ message: String) {
    let banner = String(repeating: "!", count: 100)
    for line in [banner, "WARNING: " + message, banner] {
        print(line)
        FileHandle.standardError.write(Data("deceive-bench: \(line)\n".utf8))
    }
}
if let warning { shout(warning) }

let inUse = measureSGEMM(size: 2048, seconds: min(seconds, 2), threads: threads)
print("sgemm 2048³, \(threads) threads, kernel in use (\(backend.kernel)): " + String(format: "%.1f GFLOP/s", inUse))
var kernels: [KernelMeasurement] = []
// Every OpenBLAS kernel family whose instructions this CPU runs (Cooperlake also needs AVX512-BF16).
let candidates = ["Prescott", "Sandybridge", "Haswell", "Zen", "SkylakeX", "Cooperlake"].filter {
    BLASBackend.isa(ofKernel: $0) <= cpu.isa && ($0 != "Cooperlake" || cpu.features.contains("avx512bf16"))
}
if backend.library.hasPrefix("OpenBLAS") {
    for kernel in candidates {
        guard let rate = probe(kernel: kernel) else { continue }
        kernels.append(KernelMeasurement(kernel: kernel, isa: BLASBackend.isa(ofKernel: kernel).description, gflops: rate))
        print("sgemm 2048³, \(threads) threads, kernel " + kernel.padding(toLength: 12, withPad: " ", startingAt: 0)
            + String(format: "%7.1f GFLOP/s", rate))
    }
}
let roofline = max(inUse, kernels.map(\.gflops).max() ?? 0)
let peak = isaPeak()
print(String(format: "roofline: %.1f GFLOP/s (the best sgemm above)", roofline))
if let peak {
    print(String(
        format: "ISA peak: %.0f GFLOP/s (%d cores × 2 FMA × %d lanes × 2 × nominal clock; indicative: turbo and half-width AVX-512 datapaths differ)",
        peak, threads, cpu.isa.lanes))
}
if inUse < 0.8 * roofline {
    shout(String(format: "the kernel in use reaches %.0f%% of the best kernel's sgemm on this CPU", 100 * inUse / roofline))
}

var generator = SplitMix64(seed: 42)
var model = try! Model(architecture: architecture, generator: &generator)
@MainActor func batch(_ size: Int) -> (Tensor, [Int]) {
    let input = Tensor(shape: [size] + architecture.inputShape, scalars: (0..<size * 784).map { _ in generator.nextUnitFloat() })
    return (input, (0..<size).map { $0 % 10 })
}

var measurements: [Measurement] = []
@MainActor func record(_ name: String, batchSize: Int, rate: Double, flopsPerItem: Int, target: Double?) {
    let gflops = rate * Double(flopsPerItem) / 1e9
    let measurement = Measurement(
        name: name, batchSize: batchSize, itemsPerSecond: rate, gflops: gflops, fractionOfRoofline: gflops / roofline,
        target: target)
    measurements.append(measurement)
    let verdict = target.map { measurement.fractionOfRoofline >= $0 ? "  (target \(Int($0 * 100))%: met)" : "  (target \(Int($0 * 100))%: MISSED)" } ?? ""
    print(
        name.padding(toLength: 16, withPad: " ", startingAt: 0) + String(
            format: "batch %5d  %9.0f items/s  %6.1f GFLOP/s  %5.1f%% of roofline", batchSize, rate,
            gflops, 100 * measurement.fractionOfRoofline) + verdict)
}

do {
    let (input, labels) = batch(64)
    var trainer = Trainer(model: model, optimizer: Adam())
    let rate = throughput(items: 64) { _ = trainer.train(input, labels: labels, learningRate: 1e-3, seed: 1) }
    record("train", batchSize: 64, rate: rate, flopsPerItem: architecture.trainingFLOPs, target: 0.6)
}
do {
    let (input, _) = batch(1000)
    let rate = throughput(items: 1000) { _ = model.logits(input) }
    record("evaluate", batchSize: 1000, rate: rate, flopsPerItem: architecture.forwardFLOPs.reduce(0, +), target: 0.7)
}
do {
    let (input, labels) = batch(1000)
    let rate = throughput(items: 1000) {
        _ = model.gradients(
            input, needsInputGradient: true, needsParameterGradients: false,
            loss: { logits, rows in crossEntropy(logits: logits, labels: labels[rows], gradientScale: 1) })
    }
    record("input-gradient", batchSize: 1000, rate: rate, flopsPerItem: architecture.inputGradientFLOPs, target: 0.7)
}

// Certified training and certification, on the certified model's architecture and weights.
var certification: [CertificationMeasurement] = []
let certifiedPath = value(of: "--certified-model") ?? "models/mnist-cnn-certified.safetensors"
if value(of: "--skip-attacks") == nil, FileManager.default.fileExists(atPath: certifiedPath) {
    do {
        let certified = try Checkpoint.load(from: URL(fileURLWithPath: certifiedPath)).model
        let test = try DataStore(dataset: .mnist).load().test
        let spec = certified.architecture
        print("\ncertified training and certification on \(certifiedPath) (\(spec.spec)):")
        // One IBP step at full strength (ε 0.4, κ 0.5): the natural pass and the bound pass's
        // centre and radius passes, each a forward and a backward, so counted as three
        // training passes (the elementwise work of the bounds and the loss is not counted).
        let images = test.images(0..<100)
        let labels = Array(test.labels[0..<100])
        let training = try IntervalTraining(epsilon: 0.4)
        var trainer = Trainer(model: certified, optimizer: Adam())
        let rate = throughput(items: 100) {
            let batch = training.batch(model: trainer.model, images: images, labels: labels, epsilon: 0.4, kappa: 0.5)
            _ = trainer.train(batch, learningRate: 1e-4, seed: 1)
        }
        record("certified-train", batchSize: 100, rate: rate, flopsPerItem: 3 * spec.trainingFLOPs, target: nil)
        let count = 1000
        let digits = test.images(0..<count)
        let digitLabels = Array(test.labels[0..<count])
        let clean = certified.predictions(digits, batchSize: 1000)
        for method in ["ibp", "crown"] {
            let clock = ContinuousClock()
            let start = clock.now
            let verified = method == "ibp"
                ? IntervalBoundPropagation.certify(
                    certified, images: digits, labels: digitLabels, epsilon: 0.3, cleanPredictions: clean)
                : LinearBoundPropagation.certify(
                    certified, images: digits, labels: digitLabels, epsilon: 0.3, cleanPredictions: clean)
            let elapsed = (clock.now - start).seconds
            let accuracy = Double(verified.filter { $0 }.count) / Double(count)
            certification.append(
                CertificationMeasurement(
                    method: method, epsilon: 0.3, images: count, seconds: elapsed,
                    imagesPerSecond: Double(count) / elapsed, verifiedAccuracy: accuracy))
            print(
                ("certify-" + method).padding(toLength: 16, withPad: " ", startingAt: 0)
                    + String(
                        format: "%5d images  %7.2f s  %8.0f images/s  verified %.1f%% at ε 0.3", count, elapsed,
                        Double(count) / elapsed, 100 * accuracy))
        }
    } catch {
        fail("certification: \(error)")
    }
}

// Every attack with its default parameters on real test digits of the shipped model
// (some on fewer: Carlini–Wagner runs 500 Adam steps per image, the decision-based attacks
// 10,000 queries per image), then a universal perturbation learned on 10,000 training
// digits and added to the test digits.
var attacks: [AttackMeasurement] = []
let modelPath = value(of: "--model") ?? "models/mnist-cnn.safetensors"
if value(of: "--skip-attacks") == nil, FileManager.default.fileExists(atPath: modelPath) {
    do {
        let shipped = try Checkpoint.load(from: URL(fileURLWithPath: modelPath)).model
        let test = try DataStore(dataset: .mnist).load().test
        print("\nattacks on \(modelPath) (default parameters):")
        /// Times `body`, which returns its success flags and, for a universal perturbation,
        /// the seconds it spent learning (included in the time per image).
        @MainActor func measure(_ name: String, count: Int, _ body: () throws -> ([Bool], Double?)) rethrows {
            let clock = ContinuousClock()
            let start = clock.now
            let (success, learning) = try body()
            let elapsed = (clock.now - start).seconds
            let rate = Double(success.filter { $0 }.count) / Double(count)
            attacks.append(
                AttackMeasurement(
                    attack: name, images: count, seconds: elapsed, imagesPerSecond: Double(count) / elapsed,
                    secondsPerImage: elapsed / Double(count), successRate: rate, learningSeconds: learning))
            print(
                name.padding(toLength: 16, withPad: " ", startingAt: 0)
                    + String(
                        format: "%5d images  %7.2f s  %8.0f images/s  %8.4f s/image  success %.1f%%", count, elapsed,
                        Double(count) / elapsed, elapsed / Double(count), 100 * rate)
                    + (learning.map { String(format: "  (%.2f s learning)", $0) } ?? ""))
        }
        for method in AttackMethod.allCases {
            let count = method == .cw ? 200 : (method.isDecisionBased ? 20 : 1000)
            let images = test.images(0..<count)
            let labels = Array(test.labels[0..<count])
            let attack = try method.make(AttackParameters())
            try measure(method.rawValue, count: count) {
                let result = try runInBatches(
                    attack, model: shipped, images: images, labels: labels, goal: .untargeted, seed: 1)
                return (result.success, nil)
            }
        }
        let train = try DataStore(dataset: .mnist).load().train
        let images = test.images(0..<1000)
        let labels = Array(test.labels[0..<1000])
        for norm in [Norm.linf, .l2] {
            let universal = try UniversalPerturbation(norm: norm)
            try measure(norm == .linf ? "universal" : "universal-l2", count: 1000) {
                let clock = ContinuousClock()
                let start = clock.now
                let learning = try universal.learn(
                    model: shipped, images: train.images(0..<10_000), labels: Array(train.labels[0..<10_000]),
                    seed: 1)
                let learned = (clock.now - start).seconds
                let attack = try UniversalAttack(
                    perturbation: learning.perturbation, epsilon: universal.epsilon, norm: norm)
                let result = try attack.run(model: shipped, images: images, labels: labels, goal: .untargeted, seed: 1)
                return (result.success, learned)
            }
        }
    } catch {
        fail("attacks: \(error)")
    }
}

if let output {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    let report = Report(
        architecture: architecture.spec, cpu: cpu.description, isa: cpu.isa.description, blas: backend.library,
        kernel: backend.kernel, kernelISA: backend.kernelISA.description, threads: threads, sgemmGFLOPs: inUse,
        kernels: kernels, rooflineGFLOPs: roofline, isaPeakGFLOPs: peak, warning: warning, measurements: measurements,
        certification: certification, attacks: attacks)
    do {
        try AtomicFile.write(try encoder.encode(report), to: URL(fileURLWithPath: output))
        print("wrote \(output)")
    } catch {
        fail("\(output): \(error)")
    }
}
