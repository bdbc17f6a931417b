// Reference outputs from face-api.js itself, for facegate's parity tests.
//
//   npm ci --prefix tools/parity
//   node tools/parity/reference.js MODEL_DIR OUT.json IMAGE...
//
// MODEL_DIR is `package/model` of the @vladmandic/face-api 1.7.15 tarball. Images are PNG
// (lossless, so both sides see identical pixels) or JPEG (jpeg-js). Runs on tfjs' pure-JS cpu
// backend, so the numbers do not depend on native code or a GPU.
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');
const { PNG } = require('pngjs');
const jpeg = require('jpeg-js');

function decode(file) {
  const buf = fs.readFileSync(file);
  let img;
  if (buf[0] === 0x89 && buf[1] === 0x50) img = PNG.sync.read(buf);
  else img = jpeg.decode(buf, { useTArray: true, formatAsRGBA: true });
  const { width, height, data } = img;
  const rgb = new Int32Array(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    rgb[3 * i] = data[4 * i];
    rgb[3 * i + 1] = data[4 * i + 1];
    rgb[3 * i + 2] = data[4 * i + 2];
  }
  return tf.tensor3d(rgb, [height, width, 3], 'int32');
}

const box = (b) => ({ x: b.x, y: b.y, width: b.width, height: b.height });
const points = (lm) => lm.positions.map((p) => [p.x, p.y]);

async function main() {
  const [modelDir, out, ...images] = process.argv.slice(2);
  await tf.setBackend('cpu');
  await tf.ready();
  await faceapi.nets.tinyFaceDetector.loadFromDisk(modelDir);
  await faceapi.nets.faceLandmark68Net.loadFromDisk(modelDir);
  await faceapi.nets.faceLandmark68TinyNet.loadFromDisk(modelDir);
  await faceapi.nets.faceRecognitionNet.loadFromDisk(modelDir);
  const detectorOptions = new faceapi.TinyFaceDetectorOptions({ inputSize: 416, scoreThreshold: 0.5 });
  const results = [];
  for (const file of images) {
    const t = decode(file);
    // Each net on the whole image as its input crop: isolates the network from the pipeline.
    const descriptor = Array.from(await faceapi.nets.faceRecognitionNet.computeFaceDescriptor(t));
    const landmarksTiny = points(await faceapi.nets.faceLandmark68TinyNet.detectLandmarks(t));
    const landmarksFull = points(await faceapi.nets.faceLandmark68Net.detectLandmarks(t));
    const detections = (await faceapi.nets.tinyFaceDetector.locateFaces(t, detectorOptions))
      .map((d) => ({ score: d.score, box: box(d.box) }));
    // The whole face-api pipeline: detect -> tiny landmarks -> alignDlib crop -> descriptor.
    const pipeline = (await faceapi.detectAllFaces(t, detectorOptions).withFaceLandmarks(true).withFaceDescriptors())
      .map((r) => ({
        box: box(r.detection.box),
        score: r.detection.score,
        landmarks: points(r.landmarks),
        // The descriptor's crop: withFaceDescriptors aligns with alignDlib.
        aligned: box(r.landmarks.align(null, { useDlibAlignment: true })),
        descriptor: Array.from(r.descriptor),
      }));
    results.push({
      image: path.basename(file), width: t.shape[1], height: t.shape[0],
      descriptor, landmarks_tiny: landmarksTiny, landmarks_full: landmarksFull, detections, pipeline,
    });
    t.dispose();
  }
  const meta = { generator: 'tools/parity/reference.js', face_api: faceapi.version, tfjs: tf.version_core, backend: tf.getBackend() };
  fs.writeFileSync(out, JSON.stringify({ meta, results }, null, 1));
}

main().catch((e) => { console.error(e); process.exit(1); });
