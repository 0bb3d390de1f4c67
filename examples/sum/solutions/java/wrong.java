// Sum: wrong answer -- an int accumulator overflows past 2^31 - 1.
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.util.StringTokenizer;

public class Main {
    public static void main(String[] args) throws IOException {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in), 1 << 16);
        int n = Integer.parseInt(in.readLine().trim());
        StringTokenizer st = new StringTokenizer(in.readLine());
        int sum = 0;
        for (int i = 0; i < n; i++) sum += Integer.parseInt(st.nextToken());
        System.out.println(sum);
    }
}
