// Sum: memory limit -- holds 200 MiB of heap arrays and 200 MiB of direct
// (off-heap, zero-filled, so resident) buffers before answering. The heap
// alone is capped by -Xmx at the memory limit; together they are far above it.
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.StringTokenizer;

public class Main {
    public static void main(String[] args) throws IOException {
        List<byte[]> heap = new ArrayList<>();
        List<ByteBuffer> direct = new ArrayList<>();
        for (int i = 0; i < 200; i++) {
            byte[] block = new byte[1 << 20];
            Arrays.fill(block, (byte) 1);
            heap.add(block);
            direct.add(ByteBuffer.allocateDirect(1 << 20));
        }
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in), 1 << 16);
        int n = Integer.parseInt(in.readLine().trim());
        StringTokenizer st = new StringTokenizer(in.readLine());
        long sum = 0;
        for (int i = 0; i < n; i++) sum += Long.parseLong(st.nextToken());
        System.out.println(sum + heap.size() - direct.size());
    }
}
