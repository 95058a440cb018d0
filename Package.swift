// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "Deceive",
    products: [
        .executable(name: "deceive", targets: ["deceive"]),
        .library(name: "NeuralNet", targets: ["NeuralNet"]),
        .library(name: "Datasets", targets: ["Datasets"]),
        .library(name: "Adversarial", targets: ["Adversarial"]),
        .library(name: "Visuals", targets: ["Visuals"]),
        .library(name: "Experiments", targets: ["Experiments"]),
        .library(name: "Server", targets: ["Server"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
    ],
    targets: [
        // OpenBLAS on Linux, loaded at run time so that its kernel is chosen from the CPU's
        // features (Sources/COpenBLAS/include/COpenBLAS.h says why); Apple platforms use Accelerate.
        .target(name: "COpenBLAS", linkerSettings: [.linkedLibrary("dl", .when(platforms: [.linux]))]),
        .systemLibrary(
            name: "CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"]), .brew(["zlib"])]
        ),
        .systemLibrary(
            name: "CPNG",
            pkgConfig: "libpng",
            providers: [.apt(["libpng-dev"]), .brew(["libpng"])]
        ),
        .target(
            name: "NeuralNet",
            dependencies: [.target(name: "COpenBLAS", condition: .when(platforms: [.linux]))]
        ),
        .target(
            name: "Datasets",
            dependencies: [
                "NeuralNet", "CZlib",
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .target(name: "Adversarial", dependencies: ["NeuralNet"]),
        .target(name: "Visuals", dependencies: ["NeuralNet", "CPNG"]),
        .target(name: "Experiments", dependencies: ["NeuralNet", "Datasets", "Adversarial", "Visuals"]),
        .target(
            name: "Server",
            dependencies: [
                "NeuralNet", "Adversarial", "Experiments",
                .product(name: "Hummingbird", package: "hummingbird"),
            ]
        ),
        .executableTarget(
            name: "deceive",
            dependencies: [
                "NeuralNet", "Datasets", "Adversarial", "Visuals", "Experiments", "Server",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(name: "deceive-fuzz", dependencies: ["NeuralNet", "Datasets", "Adversarial", "Visuals"]),
        .executableTarget(name: "deceive-bench", dependencies: ["NeuralNet", "Adversarial", "Datasets"]),
        .testTarget(name: "NeuralNetTests", dependencies: ["NeuralNet"]),
        .testTarget(name: "DatasetsTests", dependencies: ["Datasets", "NeuralNet"]),
        .testTarget(name: "AdversarialTests", dependencies: ["Adversarial", "NeuralNet", "Datasets"]),
        .testTarget(name: "VisualsTests", dependencies: ["Visuals", "NeuralNet"]),
        .testTarget(
            name: "ExperimentsTests",
            dependencies: ["Experiments", "Adversarial", "Datasets", "NeuralNet", "Visuals"]),
        .testTarget(
            name: "ServerTests",
            dependencies: [
                "Server", "NeuralNet",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ]),
        .testTarget(name: "deceiveTests", dependencies: ["deceive", "deceive-fuzz"]),
    ]
)
