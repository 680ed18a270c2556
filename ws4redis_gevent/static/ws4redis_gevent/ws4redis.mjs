// ws4redis.js as an ES module: `import WS4Redis from "/static/ws4redis_gevent/ws4redis.mjs";`
// Evaluated as a module, ws4redis.js defines the global WS4Redis, which is exported here.
import "./ws4redis.js";

const WS4Redis = globalThis.WS4Redis;

export default WS4Redis;
export { WS4Redis };
