// Bot.java - the example Java bot: batch_process.
//
// Reads the job's payload (JSON) on stdin, processes a batch of records and
// writes the result (JSON) on stdout.  JDK only (17+); runs as a compiled
// class (java -cp classes Bot) or as a single file (java Bot.java).
//
// Payload (all optional):
//   operation  "batch_process" (the only operation; anything else fails)
//   records    a number N (process N generated records, 0..10000000) or a
//              list of records (each is processed as its JSON text);
//              default 1000
//   sleepMs    sleep that long first (for tests), at most 3600000
//   fail       true or a message: exit 1 with the message on stderr (a
//              failure that is retried)
//   tempFile   true: write the batch checksum to a temporary file in the
//              job's temporary directory (tempDir) and remove it; the
//              result names it (tempFile) and the job's home (homeDir)
//
// Bad input (a payload that is not JSON, an unknown operation, a field out
// of range, the {"payload", "dependencies"} wrapper a job submitted with
// "dependencyResults": true gets, which this bot does not read) exits 78, the "permanent failure, do not retry" status, with a
// line on stderr that names the problem; in pool mode the answer is
// {"exit": 78, "error": ...} and the process carries on with the next job.
//
// Processing: a CRC-32 of every record, a CRC-32 over all of them (the batch
// checksum), the byte count, and the first checksums as a sample.
//
// Progress: lines "PROGRESS <0-100>" on the fd named by BOT_PROGRESS_FD (the
// worker sets it to 3); without it, or if that fd is closed, no progress.
//
// `java Bot --pool` runs in pool mode (docs/bots.md): it stays up and reads
// one job frame per line on stdin, {"job", "env", "payload"}, and answers
// {"result": ..., "job": ID} or {"exit": N, "error": ..., "job": ID} on stdout
// (ID: the frame's "job"), after {"ready": true} once loaded.  The job's variables come in the frame's env.
// While a job runs, java.io.tmpdir and user.home are its TMPDIR and HOME
// when the frame sets them (a sandboxed job's own directory, docs/bots.md);
// File.createTempFile and Files.createTempFile keep the java.io.tmpdir
// they first read, so a job makes its temporary files in tempDir(env) by
// name, as tempFile below does.

import java.io.BufferedReader;
import java.io.ByteArrayOutputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.zip.CRC32;

public class Bot {
    static OutputStream progressOut = null;

    static void progress(int value) {
        if (progressOut == null) return;
        try {
            progressOut.write(("PROGRESS " + Math.max(0, Math.min(100, value)) + "\n")
                              .getBytes(StandardCharsets.US_ASCII));
            progressOut.flush();
        } catch (IOException e) {
            progressOut = null;     // closed under us: carry on without
        }
    }

    static final int EX_CONFIG = 78;    // sysexits.h: a permanent failure, never retried

    // A job that fails: its message is what a spawned bot writes on stderr,
    // its code the exit status.
    static final class Failure extends RuntimeException {
        final int code;
        Failure(String message, int code) { super(message); this.code = code; }
    }

    static void fail(String message) {
        throw new Failure(message, 1);
    }

    // The payload is wrong: fail for good (exit 78), naming the problem.
    static Failure badInput(String message) {
        return new Failure("bad input: " + message, EX_CONFIG);
    }

    public static void main(String[] args) throws Exception {
        String fdText = System.getenv("BOT_PROGRESS_FD");
        if (fdText != null && fdText.matches("\\d+")) {
            try {
                progressOut = new FileOutputStream("/proc/self/fd/" + fdText);
            } catch (IOException e) {
                progressOut = null;
            }
        }
        if (args.length > 0 && args[0].equals("--pool")) {
            pool();
            return;
        }
        byte[] raw = readAll(System.in);
        String text = new String(raw, StandardCharsets.UTF_8);
        try {
            Object parsed;
            try {
                parsed = text.isBlank() ? new LinkedHashMap<String, Object>() : new Json(text).parseDocument();
            } catch (IllegalArgumentException e) {
                throw badInput("payload is not JSON: " + e.getMessage());
            }
            System.out.println(Json.write(run(parsed, System.getenv())));
            System.out.flush();
        } catch (Failure e) {
            System.err.println(e.getMessage());
            System.err.flush();
            System.exit(e.code);
        }
    }

    // Pool mode: one job frame per line on stdin, one answer per job.
    static void pool() throws Exception {
        PrintStream out = new PrintStream(new FileOutputStream(java.io.FileDescriptor.out), false, "UTF-8");
        System.setOut(System.err);          // a stray print must not break the protocol
        out.print("{\"ready\":true,\"pid\":" + ProcessHandle.current().pid() + "}\n");
        out.flush();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null) {
            if (line.isBlank()) continue;
            Map<String, Object> answer = new LinkedHashMap<>();
            Object job = null;
            try {
                Object frame = new Json(line).parseDocument();
                if (!(frame instanceof Map)) throw new Failure("a job frame must be an object", 1);
                Map<?, ?> map = (Map<?, ?>) frame;
                job = map.get("job");
                Map<String, String> env = new LinkedHashMap<>(System.getenv());
                if (map.get("env") instanceof Map) {
                    for (Map.Entry<?, ?> e : ((Map<?, ?>) map.get("env")).entrySet())
                        env.put(String.valueOf(e.getKey()), String.valueOf(e.getValue()));
                }
                Object payload = map.get("payload");
                String tmpdir = System.getProperty("java.io.tmpdir"), home = System.getProperty("user.home");
                try {
                    if (env.get("TMPDIR") != null) System.setProperty("java.io.tmpdir", env.get("TMPDIR"));
                    if (env.get("HOME") != null) System.setProperty("user.home", env.get("HOME"));
                    answer.put("result", run(payload, env));
                } finally {
                    System.setProperty("java.io.tmpdir", tmpdir);
                    System.setProperty("user.home", home);
                }
            } catch (Failure e) {
                answer.put("exit", (long) e.code);
                answer.put("error", e.getMessage());
            } catch (IllegalArgumentException e) {
                answer.put("exit", 1L);
                answer.put("error", "a frame that is not JSON: " + e.getMessage());
            } catch (RuntimeException e) {
                // A bug of this bot on an input it did not foresee: the job
                // fails (retried), the process serves the next one.
                answer.put("exit", 1L);
                answer.put("error", e.toString());
            }
            // The answer names its job (the frame's "job"): never taken for another's.
            if (job instanceof String) answer.put("job", job);
            out.print(Json.write(answer) + "\n");
            out.flush();
        }
    }

    // The job's temporary directory: its TMPDIR (a sandboxed job's own),
    // else java.io.tmpdir.
    static Path tempDir(Map<String, String> env) {
        String dir = env.get("TMPDIR");
        return Path.of(dir != null && !dir.isEmpty() ? dir : System.getProperty("java.io.tmpdir"));
    }

    // One job: its result, or a Failure.  env holds the job's variables.
    static Map<String, Object> run(Object parsed, Map<String, String> env) throws InterruptedException {
        long startedAt = System.currentTimeMillis();
        Map<String, Object> payload;
        if (parsed instanceof Map) {
            @SuppressWarnings("unchecked")
            Map<String, Object> map = (Map<String, Object>) parsed;
            payload = map;
            if (map.size() == 2 && map.containsKey("payload") && map.get("dependencies") instanceof Map) {
                throw badInput("the payload is the {\"payload\", \"dependencies\"} wrapper of a job submitted with "
                    + "\"dependencyResults\": true, and this bot (batch_process) does not read dependency results: "
                    + "submit it with \"dependencyResults\": false");
            }
        } else {
            payload = new LinkedHashMap<>();
            payload.put("value", parsed);
        }
        progress(0);

        Object failValue = payload.get("fail");
        if (failValue != null && !Boolean.FALSE.equals(failValue)) {
            fail(failValue instanceof String ? (String) failValue : "failing as asked (payload.fail)");
        }
        Object operation = payload.getOrDefault("operation", "batch_process");
        if (!"batch_process".equals(operation)) {
            throw badInput("unknown operation " + Json.write(operation) + " (this bot does batch_process)");
        }
        Object sleepValue = payload.getOrDefault("sleepMs", 0L);
        if (!(sleepValue instanceof Number) || ((Number) sleepValue).doubleValue() < 0
            || ((Number) sleepValue).doubleValue() > 3600000) {
            throw badInput("sleepMs must be a number from 0 to 3600000");
        }
        long sleepMs = ((Number) sleepValue).longValue();

        Object recordsValue = payload.getOrDefault("records", 1000L);
        List<byte[]> items = null;
        long count;
        if (recordsValue instanceof List) {
            List<?> list = (List<?>) recordsValue;
            items = new ArrayList<>();
            for (Object item : list) items.add(Json.write(item).getBytes(StandardCharsets.UTF_8));
            count = items.size();
        } else if (recordsValue instanceof Long && (Long) recordsValue >= 0 && (Long) recordsValue <= 10000000L) {
            count = (Long) recordsValue;
        } else {
            throw badInput("records must be a list or an integer from 0 to 10000000");
        }

        int steps = 5;
        for (int i = 0; i < steps; i++) {
            if (sleepMs > 0) Thread.sleep(sleepMs / steps);
            progress(10 * (i + 1));
        }

        CRC32 batch = new CRC32();
        CRC32 crc = new CRC32();
        long bytes = 0;
        List<Object> sample = new ArrayList<>();
        long tenth = Math.max(1, count / 10);
        for (long i = 0; i < count; i++) {
            byte[] record = items != null ? items.get((int) i)
                : ("record-" + i + "|batch|" + (i * 2654435761L % 1000003L)).getBytes(StandardCharsets.UTF_8);
            crc.reset();
            crc.update(record);
            long value = crc.getValue();
            bytes += record.length;
            batch.update((int) (value >>> 24));
            batch.update((int) (value >>> 16));
            batch.update((int) (value >>> 8));
            batch.update((int) value);
            if (sample.size() < 5) sample.add(String.format("%08x", value));
            if (i % tenth == 0) progress(50 + (int) (50 * i / Math.max(1, count)));
        }
        progress(100);

        Map<String, Object> result = new LinkedHashMap<>();
        result.put("bot", "java");
        result.put("operation", "batch_process");
        result.put("processed", count);
        result.put("bytes", bytes);
        result.put("batchChecksum", String.format("%08x", batch.getValue()));
        result.put("sample", sample);
        String jobId = env.get("BOT_JOB_ID");
        result.put("jobId", jobId);
        String attempt = env.get("BOT_ATTEMPT");
        result.put("attempt", attempt != null && attempt.matches("\\d+") ? Long.parseLong(attempt) : 1L);
        result.put("pid", ProcessHandle.current().pid());
        result.put("startedAt", startedAt);
        result.put("finishedAt", System.currentTimeMillis());
        if (Boolean.TRUE.equals(payload.get("tempFile"))) {
            try {
                Path file = Files.createTempFile(tempDir(env), "bot-", ".txt");
                Files.writeString(file, (String) result.get("batchChecksum"));
                Files.delete(file);
                result.put("tempFile", file.toString());
                result.put("homeDir", System.getProperty("user.home"));
            } catch (IOException e) {
                fail("cannot write a temporary file in " + tempDir(env) + ": " + e);
            }
        }
        return result;
    }

    static byte[] readAll(InputStream in) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        byte[] buffer = new byte[65536];
        int n;
        while ((n = in.read(buffer)) > 0) out.write(buffer, 0, n);
        return out.toByteArray();
    }

    // A small JSON reader and writer: objects (LinkedHashMap), arrays
    // (ArrayList), strings, Long or Double numbers, Boolean, null.
    static final class Json {
        private final String s;
        private int pos = 0;
        private int depth = 0;

        Json(String s) { this.s = s; }

        Object parseDocument() {
            Object value = parseValue();
            skipSpace();
            if (pos != s.length()) throw error("trailing characters");
            return value;
        }

        private IllegalArgumentException error(String what) {
            return new IllegalArgumentException(what + " at offset " + pos);
        }

        private void skipSpace() {
            while (pos < s.length() && " \t\r\n".indexOf(s.charAt(pos)) >= 0) pos++;
        }

        private Object parseValue() {
            skipSpace();
            if (pos >= s.length()) throw error("unexpected end");
            char c = s.charAt(pos);
            if (c == '{' || c == '[') {
                if (++depth > 64) throw error("nested too deeply");
                Object value = c == '{' ? parseObject() : parseArray();
                depth--;
                return value;
            }
            if (c == '"') return parseString();
            if (s.startsWith("true", pos)) { pos += 4; return Boolean.TRUE; }
            if (s.startsWith("false", pos)) { pos += 5; return Boolean.FALSE; }
            if (s.startsWith("null", pos)) { pos += 4; return null; }
            return parseNumber();
        }

        private Map<String, Object> parseObject() {
            Map<String, Object> map = new LinkedHashMap<>();
            pos++;
            skipSpace();
            if (pos < s.length() && s.charAt(pos) == '}') { pos++; return map; }
            while (true) {
                skipSpace();
                if (pos >= s.length() || s.charAt(pos) != '"') throw error("expected a key");
                String key = parseString();
                skipSpace();
                if (pos >= s.length() || s.charAt(pos) != ':') throw error("expected ':'");
                pos++;
                map.put(key, parseValue());
                skipSpace();
                if (pos >= s.length()) throw error("unexpected end");
                char c = s.charAt(pos++);
                if (c == '}') return map;
                if (c != ',') throw error("expected ',' or '}'");
            }
        }

        private List<Object> parseArray() {
            List<Object> list = new ArrayList<>();
            pos++;
            skipSpace();
            if (pos < s.length() && s.charAt(pos) == ']') { pos++; return list; }
            while (true) {
                list.add(parseValue());
                skipSpace();
                if (pos >= s.length()) throw error("unexpected end");
                char c = s.charAt(pos++);
                if (c == ']') return list;
                if (c != ',') throw error("expected ',' or ']'");
            }
        }

        private String parseString() {
            StringBuilder out = new StringBuilder();
            pos++;
            while (true) {
                if (pos >= s.length()) throw error("unterminated string");
                char c = s.charAt(pos++);
                if (c == '"') return out.toString();
                if (c != '\\') { out.append(c); continue; }
                if (pos >= s.length()) throw error("unterminated string");
                char e = s.charAt(pos++);
                switch (e) {
                    case '"': out.append('"'); break;
                    case '\\': out.append('\\'); break;
                    case '/': out.append('/'); break;
                    case 'b': out.append('\b'); break;
                    case 'f': out.append('\f'); break;
                    case 'n': out.append('\n'); break;
                    case 'r': out.append('\r'); break;
                    case 't': out.append('\t'); break;
                    case 'u':
                        if (pos + 4 > s.length()) throw error("bad \\u escape");
                        try {
                            out.append((char) Integer.parseInt(s.substring(pos, pos + 4), 16));
                        } catch (NumberFormatException ex) {
                            throw error("bad \\u escape");
                        }
                        pos += 4;
                        break;
                    default: throw error("bad escape");
                }
            }
        }

        private Object parseNumber() {
            int start = pos;
            while (pos < s.length() && "+-0123456789.eE".indexOf(s.charAt(pos)) >= 0) pos++;
            String text = s.substring(start, pos);
            if (text.isEmpty()) throw error("unexpected character");
            try {
                if (text.matches("-?\\d+")) return Long.parseLong(text);
                return Double.parseDouble(text);
            } catch (NumberFormatException e) {
                try {
                    return Double.parseDouble(text);
                } catch (NumberFormatException e2) {
                    throw error("bad number");
                }
            }
        }

        static String write(Object value) {
            StringBuilder out = new StringBuilder();
            write(out, value);
            return out.toString();
        }

        private static void write(StringBuilder out, Object value) {
            if (value == null) {
                out.append("null");
            } else if (value instanceof String) {
                String str = (String) value;
                out.append('"');
                for (int i = 0; i < str.length(); i++) {
                    char c = str.charAt(i);
                    switch (c) {
                        case '"': out.append("\\\""); break;
                        case '\\': out.append("\\\\"); break;
                        case '\n': out.append("\\n"); break;
                        case '\r': out.append("\\r"); break;
                        case '\t': out.append("\\t"); break;
                        default:
                            if (c < 0x20) out.append(String.format("\\u%04x", (int) c));
                            else out.append(c);
                    }
                }
                out.append('"');
            } else if (value instanceof Double) {
                double d = (Double) value;
                out.append(Double.isFinite(d) ? Double.toString(d) : "null");
            } else if (value instanceof Number || value instanceof Boolean) {
                out.append(value.toString());
            } else if (value instanceof Map) {
                out.append('{');
                boolean first = true;
                for (Map.Entry<?, ?> e : ((Map<?, ?>) value).entrySet()) {
                    if (!first) out.append(',');
                    first = false;
                    write(out, String.valueOf(e.getKey()));
                    out.append(':');
                    write(out, e.getValue());
                }
                out.append('}');
            } else if (value instanceof List) {
                out.append('[');
                boolean first = true;
                for (Object item : (List<?>) value) {
                    if (!first) out.append(',');
                    first = false;
                    write(out, item);
                }
                out.append(']');
            } else {
                write(out, value.toString());
            }
        }
    }
}
