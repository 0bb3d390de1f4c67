// Sum: time limit -- correct, but recomputes every prefix sum: O(N^2).
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.util.StringTokenizer;

public class Main {
    public static void main(String[] args) throws IOException {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in), 1 << 16);
        int n = Integer.parseInt(in.readLine().trim());
        StringTokenizer st = new StringTokenizer(in.readLine());
        long[] a = new long[n];
        for (int i = 0; i < n; i++) a[i] = Long.parseLong(st.nextToken());
        long prefix = 0;
        for (int i = 0; i < n; i++) {
            long p = 0;
            for (int j = 0; j <= i; j++) p += a[j];
            prefix = p;
        }
        System.out.println(prefix);
    }
}
