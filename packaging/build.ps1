# Build the one-dir program on Windows: DIST\dtesync\dtesync.exe (+ _internal\).
#   powershell -ExecutionPolicy Bypass -File packaging\build.ps1 [-Dist dist] [-Work build]
# Needs Python 3.11+ with the project and its build extra: py -m pip install -e ".[build]"
# (pywin32 is installed automatically on Windows as a dependency of dtesync).
param(
    [string]$Dist = "",
    [string]$Work = "",
    [string]$Python = "py"
)
$ErrorActionPreference = "Stop"
$Root = Split-Path -Parent $PSScriptRoot
if (-not $Dist) { $Dist = Join-Path $Root "dist" }
if (-not $Work) { $Work = Join-Path $Root "build" }
Push-Location $Root
try {
    & $Python -c "import PyInstaller" 2>$null
    if ($LASTEXITCODE -ne 0) { & $Python -m pip install -q "pyinstaller>=6"; if ($LASTEXITCODE -ne 0) { throw "pip failed" } }
    & $Python -m PyInstaller --noconfirm --clean --log-level WARN --distpath $Dist --workpath $Work packaging\dtesync.spec
    if ($LASTEXITCODE -ne 0) { throw "PyInstaller failed ($LASTEXITCODE)" }
    $Exe = Join-Path $Dist "dtesync\dtesync.exe"
    & $Exe --version
    if ($LASTEXITCODE -ne 0) { throw "the built program does not run" }
    Write-Host "built: $(Join-Path $Dist 'dtesync') (copy the whole folder; then: dtesync.exe service install)"
} finally {
    Pop-Location
}
