/* A stand-in for python.exe, py.exe and friends when launch.bat runs under Wine.
 *
 * It hands its program name, working folder, argv (as Windows parses it), raw command
 * line and environment to the test on the Linux side through files in %STUB_BRIDGE%
 * (<id>.req), waits for <id>.rc, prints <id>.out and <id>.err and exits with that code.
 * Wine does not wait for Linux programs, so the test answers through files instead.
 * Build: x86_64-w64-mingw32-gcc -municode -O2 -o stub.exe stub.c
 */
#include <windows.h>
#include <stdio.h>
#include <stdlib.h>

static void put(FILE *f, const wchar_t *text) {
    char buf[65536];
    int n = WideCharToMultiByte(CP_UTF8, 0, text, -1, buf, sizeof buf, NULL, NULL);
    fwrite(buf, 1, n > 0 ? n : 1, f);  /* includes the terminating NUL as separator */
}

static void copy_out(const wchar_t *path, HANDLE to) {
    FILE *f = _wfopen(path, L"rb");
    char buf[65536];
    size_t n;
    DWORD written;
    if (!f) return;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) WriteFile(to, buf, (DWORD)n, &written, NULL);
    fclose(f);
    DeleteFileW(path);
}

int wmain(int argc, wchar_t **argv) {
    wchar_t bridge[MAX_PATH], base[MAX_PATH * 2], tmp[MAX_PATH * 2], req[MAX_PATH * 2], path[MAX_PATH * 2];
    wchar_t exe[MAX_PATH], cwd[MAX_PATH * 2];
    if (!GetEnvironmentVariableW(L"STUB_BRIDGE", bridge, MAX_PATH)) return 99;
    swprintf(base, MAX_PATH * 2, L"%ls\\%08lx-%08lx", bridge, GetCurrentProcessId(), GetTickCount());
    swprintf(tmp, MAX_PATH * 2, L"%ls.tmp", base);
    swprintf(req, MAX_PATH * 2, L"%ls.req", base);
    GetModuleFileNameW(NULL, exe, MAX_PATH);
    GetCurrentDirectoryW(MAX_PATH * 2, cwd);
    FILE *f = _wfopen(tmp, L"wb");
    if (!f) return 98;
    put(f, exe);
    put(f, cwd);
    put(f, GetCommandLineW());
    wchar_t count[16];
    swprintf(count, 16, L"%d", argc);
    put(f, count);
    for (int i = 0; i < argc; i++) put(f, argv[i]);
    for (wchar_t *env = GetEnvironmentStringsW(); *env; env += wcslen(env) + 1) put(f, env);
    fclose(f);
    MoveFileW(tmp, req);
    swprintf(path, MAX_PATH * 2, L"%ls.rc", base);
    for (int waited = 0; GetFileAttributesW(path) == INVALID_FILE_ATTRIBUTES; waited++) {
        if (waited > 12000) return 97;  /* 60 s */
        Sleep(5);
    }
    int rc = 0;
    f = _wfopen(path, L"rb");
    if (f) { fscanf(f, "%d", &rc); fclose(f); }
    DeleteFileW(path);
    swprintf(path, MAX_PATH * 2, L"%ls.out", base);
    copy_out(path, GetStdHandle(STD_OUTPUT_HANDLE));
    swprintf(path, MAX_PATH * 2, L"%ls.err", base);
    copy_out(path, GetStdHandle(STD_ERROR_HANDLE));
    return rc;
}
